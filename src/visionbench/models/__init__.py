"""Models: CNNs from layer specs, the studies' presets, timm backbones, heads, freezing."""
