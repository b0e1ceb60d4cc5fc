"""What the operator-views scenario reads of the console's pages in the browser: each a
function Playwright evaluates on the page, returning what it found (or null to be polled
again through the page's live updates)."""

from __future__ import annotations

UNDECIDED_OK = """() => {
  const ok = /\\bok\\b/i;
  const states = [...document.querySelectorAll('.guardrail-state')];
  const wrong = states
    .filter(e => e.dataset.state !== 'holds' && ok.test(e.textContent))
    .map(e => e.textContent);
  // the report marks a state "ok" by its class: only "holds" may carry it
  const marked = [...document.querySelectorAll('.ok:not(.srm)')]
    .filter(e => !e.textContent.trim().startsWith('holds'))
    .map(e => e.textContent);
  return {checked: states.length + document.querySelectorAll('td').length,
          wrong: wrong.concat(marked)};
}"""

NEEDS = """() => {
  const items = [...document.querySelectorAll('dd.stage-needs li')].map(li => li.textContent);
  const time = items.find(t => /^minimum stage time: .+ left$/.test(t));
  const units = items.find(t => /^units per arm: /.test(t));
  return time && units ? {time, units} : null;
}"""
LIMIT_POINTS = """() => {
  const chart = document.querySelector('svg.limit-chart[data-limit="error_rate"]');
  if (!chart || chart.querySelector('text.empty')) return null;
  const points = chart.querySelectorAll('circle.point').length;
  const phase = document.querySelector('dl.summary dd.phase')?.textContent;
  const desc = chart.querySelector('desc').textContent;
  // a rate with a finite bound: the treated units' requests counted, not "0 [0, unbounded]"
  return points > 0 && !/unbounded/.test(desc) ? {points, phase, desc} : null;
}"""
LIMIT_LAYOUT = """() => {
  const chart = document.querySelector('svg.limit-chart[data-limit="error_rate"]');
  const plot = chart.querySelector('rect.plot');
  const limit = chart.querySelector('line.limit');
  const [top, height] = ['y', 'height'].map(a => +plot.getAttribute(a));
  const guardrails = document.querySelector('section[aria-labelledby="h-guardrails"]');
  const share = y => (top + height - y) / height;
  const ys = [...chart.querySelectorAll('circle.point')].map(c => +c.getAttribute('cy'));
  const highest = Math.min(...ys);
  return {
    limit_height: share(+limit.getAttribute('y1')),
    rate_height: share(highest),
    margin: getComputedStyle(chart.closest('figure')).marginLeft,
    guardrail_margin: getComputedStyle(guardrails.querySelector('figure')).marginLeft,
    blank_charts: guardrails.querySelectorAll('svg').length,
  };
}"""
VERDICT_ENDING = """(ending) => {
  const text = document.querySelector('p.verdict')?.innerText;
  return text && text.endsWith(ending) ? text : null;
}"""
STAGE_LINES = """(selector) => Object.fromEntries(
  [...document.querySelectorAll(selector + ' line.stage')]
    .map(l => [l.dataset.ts, l.getAttribute('x1')])
)"""

LIMIT_BANDS = """() => {
  // each run of the limit's band, by its x-range, and each stage's start: a band drawn
  // across a stage's start is one ramp over two stages, not a band per stage it tested
  const chart = document.querySelector('svg.limit-chart[data-limit="error_rate"]');
  const bands = [...chart.querySelectorAll('polygon.bound')].map(p => {
    const xs = p.getAttribute('points').trim().split(/\\s+/).map(xy => +xy.split(',')[0]);
    return [Math.min(...xs), Math.max(...xs)];
  });
  const starts = [...chart.querySelectorAll('line.stage')].map(l => +l.getAttribute('x1'));
  return {
    bands: bands.length,
    lines: chart.querySelectorAll('polyline.delta').length,
    across: starts.filter(x => bands.some(([lo, hi]) => lo < x - 1 && hi > x + 1)),
  };
}"""
PLOT_EDGES = """(selector) => {
  const plot = document.querySelector(selector + ' rect.plot').getBoundingClientRect();
  return [plot.left, plot.right];
}"""
LIMITS_SAID = """() => {
  // the Limits section's own line and the sample-ratio block's comparison
  const state = document.querySelector('figure.limit[data-limit="error_rate"] p.limit-state');
  const compared = document.querySelector('section[aria-labelledby="h-srm"] p.comparison');
  return state && compared ? {state: state.textContent, compared: compared.textContent} : null;
}"""
ROW_HEALTH = """([flag, note]) => {
  // the flag's row in the list once its health's note matches ``note``: the word and
  // whether it is painted as a healthy row is (a probe of that class, measured beside it).
  // The list is fetched as its live updates fetch it, one fetch at a time at each poll
  // rather than every 5 s: a limit is undecided for a few seconds only.
  const live = document.getElementById('live');
  window.listing ??= fetch(live.dataset.fragment, {cache: 'no-store'})
    .then(r => (r.ok ? r.text() : null))
    .then(html => { if (html) live.innerHTML = html; })
    .finally(() => { window.listing = null; });
  const cell = document.querySelector(`tr[data-flag="${flag}"] td[data-label="health"]`);
  const said = cell?.querySelector('small')?.textContent ?? '';
  if (!cell || !new RegExp(note).test(said)) return null;
  const health = cell.querySelector('span.health');
  const probe = document.createElement('span');
  probe.className = 'health healthy';
  cell.appendChild(probe);
  const paint = e => ['color', 'backgroundColor', 'borderColor']
    .map(k => getComputedStyle(e)[k]).join(' ');
  const green = paint(probe) === paint(health);
  probe.remove();
  return {health: health.className, word: health.textContent, note: said, green};
}"""
