// Time charts over uPlot (loaded as a classic script: the global `uPlot`). A chart keeps at most
// `maxPoints` points and `maxSeries` series: a device choosing its own field names must not grow the
// page without bound. Series names reach uPlot's legend, which writes them with textContent.

const PALETTE = ['#2563eb', '#dc2626', '#16a34a', '#d97706', '#7c3aed', '#0891b2', '#db2777', '#4b5563']

export class TimeChart {
  /** `container`: an element the chart fills; `title` shown above it. */
  constructor(container, { title, maxPoints = 300, maxSeries = PALETTE.length, height = 200, unit = '' }) {
    this.container = container
    this.title = title
    this.maxPoints = maxPoints
    this.maxSeries = maxSeries
    this.height = height
    this.unit = unit
    this.names = []
    this.xs = []
    this.ys = []
    this.plot = undefined
    this.onResize = () => this.plot?.setSize(this.size())
    window.addEventListener('resize', this.onResize)
    this.build()
  }

  size() {
    return { width: Math.max(300, this.container.clientWidth || 600), height: this.height }
  }

  /** Adds a point at `t` (seconds); `values`: series name → number. A name not seen before adds a series (up to maxSeries). */
  push(t, values) {
    this.pushMany([[t, values]])
  }

  /** Adds `[t, values]` points and draws once: a page taking many at a time redraws once a frame, not once a point. */
  pushMany(points) {
    if (points.length === 0) return
    let grown = false
    // only the last maxPoints can be kept
    for (const [t, values] of points.slice(-this.maxPoints)) {
      for (const name of Object.keys(values)) {
        if (this.names.includes(name) || this.names.length >= this.maxSeries) continue
        this.names.push(name)
        this.ys.push(this.xs.map(() => null))
        grown = true
      }
      this.xs.push(t)
      this.names.forEach((name, k) => {
        const v = values[name]
        this.ys[k].push(typeof v === 'number' && Number.isFinite(v) ? v : null)
      })
    }
    const extra = this.xs.length - this.maxPoints
    if (extra > 0) {
      this.xs.splice(0, extra)
      for (const y of this.ys) y.splice(0, extra)
    }
    if (grown) this.build()
    else this.plot.setData([this.xs, ...this.ys])
    // the legend shows the latest values unless the cursor points at others
    if (this.plot.cursor.idx === null || this.plot.cursor.idx === undefined) this.plot.setLegend({ idx: this.xs.length - 1 })
  }

  /** How many points the chart holds. */
  get length() { return this.xs.length }

  build() {
    this.plot?.destroy()
    const unit = this.unit
    this.plot = new uPlot({
      title: this.title,
      ...this.size(),
      // one point (or none) would stretch the time axis over years: show a minute around it
      scales: { x: { time: true, range: (u, min, max) => (min === null || min === max ? [(min ?? Date.now() / 1000) - 30, (max ?? Date.now() / 1000) + 30] : [min, max]) } },
      series: [{}, ...this.names.map((name, k) => ({
        label: name, stroke: PALETTE[k % PALETTE.length], width: 2, spanGaps: true,
        value: (_, v) => (v === null || v === undefined ? '—' : `${Number(v.toPrecision(6))}${unit}`),
      }))],
      axes: [{}, { size: 60 }],
      legend: { live: true },
      // a new chart's first draw clears the legend: show the latest values once it is drawn
      hooks: { ready: [(u) => u.setLegend({ idx: u.data[0].length - 1 })] },
    }, [this.xs, ...this.ys], this.container)
  }

  destroy() {
    window.removeEventListener('resize', this.onResize)
    this.plot?.destroy()
    this.plot = undefined
  }
}
