"""Training: the fit loop, callbacks, schedules, augmentation and class balancing."""
