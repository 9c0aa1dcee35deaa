(function () {
  var all = function () { return Array.prototype.slice.call(document.querySelectorAll('details')); };
  var controls = document.getElementById('controls');
  if (controls) { controls.hidden = false; }
  var expand = document.getElementById('expand-all'), collapse = document.getElementById('collapse-all');
  if (expand) { expand.addEventListener('click', function () { all().forEach(function (d) { d.open = true; }); }); }
  if (collapse) { collapse.addEventListener('click', function () { all().forEach(function (d) { d.open = false; }); }); }
  var reopened = [];
  window.addEventListener('beforeprint', function () {
    reopened = all().filter(function (d) { return !d.open; });
    reopened.forEach(function (d) { d.open = true; });
  });
  window.addEventListener('afterprint', function () { reopened.forEach(function (d) { d.open = false; }); reopened = []; });
  function openTarget() {
    var id = decodeURIComponent(location.hash.slice(1));
    var el = id ? document.getElementById(id) : null;
    if (el && el.tagName === 'DETAILS') { el.open = true; }
  }
  window.addEventListener('hashchange', openTarget);
  openTarget();
})();
