(function () {
  if (!('DecompressionStream' in window)) {
    document.querySelectorAll('.plot').forEach(function (plot) {
      plot.textContent = 'This browser cannot unpack the charts (it lacks DecompressionStream); '
        + 'open the report in a recent Chrome, Edge, Firefox or Safari.';
    });
    return;
  }
  var text = atob(document.getElementById('plotly-gzip').textContent);
  var bytes = new Uint8Array(text.length);
  for (var i = 0; i < text.length; i++) { bytes[i] = text.charCodeAt(i); }
  var unpacked = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
  new Response(unpacked).text().then(function (code) {
    var script = document.createElement('script');
    script.textContent = code;
    document.head.appendChild(script);
    drawCharts();
    document.body.dataset.charts = 'drawn';
  });
})();
