package postfix

// hostMap maps a (host, K) pair to a V: one map per host, the one of the
// host looked up last at hand. A log almost always names one host, so a
// lookup hashes K alone, which is cheaper than a key of two parts.
type hostMap[K comparable, V any] struct {
	hosts map[string]*hostEntry[K, V]
	last  *hostEntry[K, V] // the entry of the host looked up last, or nil
	n     int              // entries over all hosts
}

type hostEntry[K comparable, V any] struct {
	host string // the correlator's own copy
	m    map[K]V
}

// entry returns host's entry, nil when it has none.
func (h *hostMap[K, V]) entry(host string) *hostEntry[K, V] {
	if e := h.last; e != nil && e.host == host {
		return e
	}
	e := h.hosts[host]
	if e != nil {
		h.last = e
	}
	return e
}

func (h *hostMap[K, V]) get(host string, k K) (V, bool) {
	if e := h.entry(host); e != nil {
		v, ok := e.m[k]
		return v, ok
	}
	var zero V
	return zero, false
}

// set maps (host, k) to v; host must not share a line's memory.
func (h *hostMap[K, V]) set(host string, k K, v V) {
	e := h.entry(host)
	if e == nil {
		if h.hosts == nil {
			h.hosts = map[string]*hostEntry[K, V]{}
		}
		e = &hostEntry[K, V]{host: host, m: map[K]V{}}
		h.hosts[host] = e
		h.last = e
	}
	n := len(e.m)
	e.m[k] = v
	h.n += len(e.m) - n
}

func (h *hostMap[K, V]) delete(host string, k K) {
	if e := h.entry(host); e != nil {
		n := len(e.m)
		delete(e.m, k)
		h.n -= n - len(e.m)
	}
}

func (h *hostMap[K, V]) len() int { return h.n }

func (h *hostMap[K, V]) clear() { *h = hostMap[K, V]{} }

// all yields every entry until yield returns false; yield may delete the
// entry it is given.
func (h *hostMap[K, V]) all(yield func(host string, k K, v V) bool) {
	for _, e := range h.hosts {
		for k, v := range e.m {
			if !yield(e.host, k, v) {
				return
			}
		}
	}
}
