/* Statistics pages: ECharts charts from inline JSON, and sortable tables.
 *
 * Load after the vendored library, both deferred (no inline script: the CSP is
 * script-src 'self' 'nonce-…'):
 *   <script src="vendor/echarts/echarts.min.js" defer></script>
 *   <script src="stats.js" defer></script>
 *
 * Chart:  <div class="chart" data-chart-src="ID" style="height:280px"></div>
 *         <script type="application/json" id="ID">
 *           {"kind": "line"|"bar"|"funnel", "labels": [...],
 *            "series": [{"name": "…", "data": [...], "axis": 0|1}], "yuan": [false, true]}
 *         </script>
 *   axis 1 is a right-hand y axis; yuan[i] formats axis i (and its series' tooltips) as ¥.
 *   A funnel draws series[0] over the labels (its stages) as horizontal bars with each
 *   stage's share of the one before.
 * Table:  <table class="sortable"> … <th data-sort="num|text"> …; a cell's data-value, when
 *   present, is its sort key instead of its text.
 */
(function () {
  'use strict';

  const LANG = document.documentElement.lang || '';
  const IS_EN = LANG.toLowerCase().indexOf('en') === 0;
  const LOCALE = IS_EN ? 'EN' : 'ZH';
  const FONT = 11;
  const number = new Intl.NumberFormat(IS_EN ? 'en' : 'zh-Hans', { maximumFractionDigits: 2 });

  function yuan(value) {
    if (value === null || value === undefined || value === '' || value === '-') return '—';
    const n = Number(value);
    return isFinite(n) ? '¥' + number.format(n) : '—';
  }

  function readSpec(el) {
    const source = document.getElementById(el.getAttribute('data-chart-src') || '');
    if (!source) return null;
    try {
      const spec = JSON.parse(source.textContent);
      return spec && typeof spec === 'object' ? spec : null;
    } catch (err) {
      return null;
    }
  }

  function hasValues(series) {
    return series.some(function (s) {
      return Array.isArray(s.data) && s.data.some(function (v) {
        return v !== null && v !== '' && isFinite(Number(v));
      });
    });
  }

  function cartesianOption(spec, labels, series) {
    const flags = Array.isArray(spec.yuan) ? spec.yuan : [];
    const axisCount = series.some(function (s) { return Number(s.axis) === 1; }) ? 2 : 1;
    const yAxis = [];
    for (let i = 0; i < axisCount; i++) {
      yAxis.push({
        type: 'value',
        position: i === 0 ? 'left' : 'right',
        splitLine: { show: i === 0 },
        axisLabel: { fontSize: FONT, formatter: flags[i] ? yuan : undefined },
      });
    }
    return {
      tooltip: { trigger: 'axis', confine: true, textStyle: { fontSize: FONT + 1 } },
      legend: { type: 'scroll', top: 0, left: 'center', textStyle: { fontSize: FONT },
        itemWidth: 16, itemHeight: 10 },
      grid: { left: 4, right: 4, top: 32, bottom: 4, containLabel: true },
      xAxis: {
        type: 'category',
        data: labels,
        boundaryGap: spec.kind === 'bar',
        axisLabel: { fontSize: FONT, hideOverlap: true },
      },
      yAxis: yAxis,
      series: series.map(function (s) {
        const axis = axisCount === 2 && Number(s.axis) === 1 ? 1 : 0;
        const item = {
          type: spec.kind,
          name: String(s.name === undefined ? '' : s.name),
          data: Array.isArray(s.data) ? s.data : [],
          yAxisIndex: axis,
        };
        if (flags[axis]) item.tooltip = { valueFormatter: yuan };
        return item;
      }),
    };
  }

  // A conversion funnel as horizontal bars, top stage first: each bar is as long as its own
  // value and says what share of the stage before it went on (an ECharts funnel draws each
  // band from its value to the next one's, so a small first stage would still look large).
  function funnelOption(spec, labels, series) {
    const values = Array.isArray(series[0].data) ? series[0].data : [];
    const inYuan = Array.isArray(spec.yuan) && spec.yuan[0];
    const show = function (v) { return inYuan ? yuan(v) : number.format(Number(v) || 0); };
    const data = labels.map(function (name, i) {
      const v = Number(values[i]);
      return isFinite(v) ? v : 0;
    });
    const share = function (i) {
      if (i === 0 || !data[i - 1]) return '';
      return ' (' + number.format(Math.round((data[i] / data[i - 1]) * 1000) / 10) + '%)';
    };
    return {
      tooltip: {
        trigger: 'item', confine: true, textStyle: { fontSize: FONT + 1 },
        formatter: function (p) { return p.marker + p.name + ': ' + show(p.value) + share(p.dataIndex); },
      },
      grid: { left: 4, right: 48, top: 8, bottom: 4, containLabel: true },
      xAxis: { type: 'value', show: false },
      yAxis: { type: 'category', inverse: true, data: labels.map(String),
        axisTick: { show: false }, axisLabel: { fontSize: FONT } },
      series: [{
        type: 'bar',
        name: String(series[0].name === undefined ? '' : series[0].name),
        data: data,
        barMaxWidth: 36,
        colorBy: 'data',
        label: {
          show: true, position: 'right', fontSize: FONT,
          formatter: function (p) { return show(p.value) + share(p.dataIndex); },
        },
      }],
    };
  }

  function showEmpty(el) {
    el.textContent = '—';
    el.classList.add('chart-empty');
    el.style.display = 'flex';
    el.style.alignItems = 'center';
    el.style.justifyContent = 'center';
  }

  function renderChart(el) {
    const spec = readSpec(el);
    const labels = spec && Array.isArray(spec.labels) ? spec.labels : [];
    const series = spec && Array.isArray(spec.series)
      ? spec.series.filter(function (s) { return s && typeof s === 'object'; }) : [];
    const kinds = ['line', 'bar', 'funnel'];
    if (!window.echarts || !spec || kinds.indexOf(spec.kind) < 0 || !labels.length
        || !series.length || !hasValues(spec.kind === 'funnel' ? series.slice(0, 1) : series)) {
      showEmpty(el);
      return null;
    }
    const chart = window.echarts.init(el, null, { locale: LOCALE });
    chart.setOption(spec.kind === 'funnel'
      ? funnelOption(spec, labels, series)
      : cartesianOption(spec, labels, series));
    return chart;
  }

  function initCharts() {
    const charts = [];
    document.querySelectorAll('.chart[data-chart-src]').forEach(function (el) {
      const chart = renderChart(el);
      if (chart) charts.push(chart);
    });
    if (!charts.length) return;
    if (typeof ResizeObserver === 'function') {
      const observer = new ResizeObserver(function (entries) {
        entries.forEach(function (entry) {
          const chart = window.echarts.getInstanceByDom(entry.target);
          if (chart) chart.resize();
        });
      });
      charts.forEach(function (chart) { observer.observe(chart.getDom()); });
    } else {
      window.addEventListener('resize', function () {
        charts.forEach(function (chart) { chart.resize(); });
      });
    }
  }

  function sortKey(cell, numeric) {
    if (!cell) return numeric ? NaN : '';
    const raw = cell.hasAttribute('data-value') ? cell.getAttribute('data-value')
      : cell.textContent.trim();
    if (!numeric) return raw;
    const cleaned = raw.replace(/[^0-9eE+\-.]/g, '');
    return cleaned === '' ? NaN : Number(cleaned);
  }

  function sortTable(table, th) {
    const column = th.cellIndex;
    const numeric = th.getAttribute('data-sort') === 'num';
    const ascending = th.getAttribute('aria-sort') !== 'ascending';
    const sign = ascending ? 1 : -1;
    const collator = new Intl.Collator(IS_EN ? 'en' : 'zh-Hans', { numeric: true });
    table.querySelectorAll('th[data-sort]').forEach(function (other) {
      if (other !== th) other.removeAttribute('aria-sort');
    });
    th.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
    Array.prototype.forEach.call(table.tBodies, function (tbody) {
      const rows = Array.prototype.map.call(tbody.rows, function (row) {
        return { row: row, key: sortKey(row.cells[column], numeric) };
      });
      rows.sort(function (a, b) {
        if (numeric) {
          const aNaN = isNaN(a.key);
          const bNaN = isNaN(b.key);
          if (aNaN || bNaN) return aNaN === bNaN ? 0 : (aNaN ? 1 : -1);  // blanks last
          return sign * (a.key - b.key);
        }
        return sign * collator.compare(a.key, b.key);
      });
      rows.forEach(function (r) { tbody.appendChild(r.row); });
    });
  }

  function initTables() {
    document.querySelectorAll('table.sortable').forEach(function (table) {
      table.querySelectorAll('th[data-sort]').forEach(function (th) {
        th.tabIndex = 0;
        th.style.cursor = 'pointer';
        th.addEventListener('click', function () { sortTable(table, th); });
        th.addEventListener('keydown', function (event) {
          if (event.key === 'Enter' || event.key === ' ') {
            event.preventDefault();
            sortTable(table, th);
          }
        });
      });
    });
  }

  function init() {
    initCharts();
    initTables();
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', init);
  } else {
    init();
  }
}());
