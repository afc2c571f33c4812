// The Rampart console's live updates: the overview's figures from /console/live, and a job's
// events from /console/jobs/{id}/events while it runs. Everything else works without this.
(function () {
  'use strict';

  function each(selector, apply) {
    Array.prototype.forEach.call(document.querySelectorAll(selector), apply);
  }

  function applyOverview(message) {
    var text = message.text || {};
    Object.keys(text).forEach(function (key) {
      each('[data-live="' + key + '"]', function (element) { element.textContent = text[key]; });
    });
    // Markup rendered (and escaped) by the gateway's own templates.
    var html = message.html || {};
    Object.keys(html).forEach(function (key) {
      each('[data-live-html="' + key + '"]', function (element) { element.innerHTML = html[key]; });
    });
    var root = document.documentElement;
    root.setAttribute('data-live-updates', String(Number(root.getAttribute('data-live-updates') || 0) + 1));
  }

  var overview = document.querySelector('[data-live-source]');
  if (overview && window.EventSource) {
    var live = new EventSource(overview.getAttribute('data-live-source'));
    live.addEventListener('overview', function (event) {
      try { applyOverview(JSON.parse(event.data)); } catch (ignored) { /* the next one will do */ }
    });
  }

  var job = document.querySelector('[data-live-job]');
  if (job && window.EventSource && job.getAttribute('data-job-ended') !== 'true') {
    var events = new EventSource(job.getAttribute('data-live-job'));
    var timeline = document.querySelector('[data-timeline]');
    var badge = document.querySelector('[data-job-status]');
    var ended = ['succeeded', 'failed', 'dead', 'cancelled', 'expired'];
    var first = true;

    var onProgress = function (event) {
      var data = JSON.parse(event.data);
      if (!data.progress) { return; }
      var section = document.querySelector('[data-progress-section]');
      var bar = document.querySelector('[data-progress-bar]');
      var label = document.querySelector('[data-progress-text]');
      if (section) { section.hidden = false; }
      if (bar) { bar.value = data.progress.fraction; }
      if (label) { label.textContent = Math.round(data.progress.fraction * 100) + '% ' + data.progress.message; }
    };

    var onStatus = function (event) {
      var data = JSON.parse(event.data);
      var unchanged = first && badge && badge.textContent === data.status;
      first = false;
      if (badge) {
        badge.textContent = data.status;
        badge.className = 'badge status-' + data.status;
      }
      if (!unchanged && timeline) {
        var item = document.createElement('li');
        var when = document.createElement('time');
        when.setAttribute('datetime', data.at);
        when.textContent = data.at.replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
        var what = document.createElement('strong');
        what.textContent = data.status + (data.attempts ? ' (attempt ' + data.attempts + ')' : '');
        item.appendChild(when);
        item.appendChild(document.createTextNode(' '));
        item.appendChild(what);
        if (data.error) { item.appendChild(document.createTextNode(' ' + data.error)); }
        timeline.appendChild(item);
      }
      if (ended.indexOf(data.status) >= 0) {
        events.close();
        // The page again, with the result, the error and the attempts as stored.
        window.setTimeout(function () { window.location.reload(); }, 250);
      }
    };

    events.addEventListener('progress', onProgress);
    ['queued', 'running'].concat(ended).forEach(function (name) { events.addEventListener(name, onStatus); });
  }
})();
