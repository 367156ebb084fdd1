package stats

// Process-local gauges describe this process alone — its build, when it
// started, how it came to be — so they never take part in what another
// process contributes: a view (an Envoy-style parent's gauges) does not add
// to them, and they are not counters, so no handoff carries them.

// GaugeFunc registers the process-local gauge name{labels} whose value is
// read from fn whenever the registry is read (fn must be safe for concurrent
// use and must not call back into the registry). Registering the same series
// again replaces fn.
func (r *Registry) GaugeFunc(name, help string, fn func() float64, labels ...string) {
	m := r.get(name, help, KindGauge, labels)
	r.markLocal(name)
	m.fn.Store(&fn)
}

// LocalGauge returns the process-local gauge name{labels}: one whose value
// describes this process alone (its config, say), so that a view never adds
// another process's value to it.
func (r *Registry) LocalGauge(name, help string, labels ...string) *Gauge {
	g := &Gauge{r.get(name, help, KindGauge, labels)}
	r.markLocal(name)
	return g
}

// SetInfo makes name{labels} = value the only series of name, removing any
// other series of that name (an info series whose labels change, such as a
// record of the last upgrade). The series is process-local.
func (r *Registry) SetInfo(name, help string, value float64, labels ...string) {
	if len(labels)%2 != 0 {
		labels = append(labels, "")
	}
	key := seriesKey(name, labels)
	r.mu.Lock()
	for k, m := range r.series {
		if m.name == name && k != key {
			delete(r.series, k)
		}
	}
	r.mu.Unlock()
	r.LocalGauge(name, help, labels...).Set(value)
}

func (r *Registry) markLocal(name string) {
	r.mu.Lock()
	r.local[name] = true
	r.mu.Unlock()
}

func (r *Registry) isLocal(name string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.local[name]
}
