package report

import "math"

// hist is a log-bucketed histogram of non-negative seconds: bucket 0 holds
// values under 1 ms, bucket i ≥ 1 values in [1ms·g^(i-1), 1ms·g^i) with
// g = 1.02, so a quantile read from it is within 2% of the true value. Its
// size is fixed whatever the number of values.
type hist struct {
	n, sum float64
	max    float64
	counts [histBuckets]uint32
}

const (
	histBuckets = 1400 // 1ms·1.02^1399 ≈ 1e9 s
	histMin     = 0.001
	histGrowth  = 1.02
)

func (h *hist) add(v float64) {
	if math.IsNaN(v) || v < 0 || math.IsInf(v, 0) {
		return
	}
	h.n++
	h.sum += v
	if v > h.max {
		h.max = v
	}
	i := 0
	if v >= histMin {
		i = 1 + int(math.Log(v/histMin)/math.Log(histGrowth))
		if i >= histBuckets {
			i = histBuckets - 1
		}
	}
	if h.counts[i] < math.MaxUint32 {
		h.counts[i]++
	}
}

// quantile returns the upper bound of the bucket holding the q-th value,
// never above the maximum seen.
func (h *hist) quantile(q float64) float64 {
	if h.n == 0 {
		return 0
	}
	var total float64
	for _, c := range h.counts {
		total += float64(c)
	}
	rank := q * total
	var seen float64
	for i, c := range h.counts {
		seen += float64(c)
		if seen >= rank && c > 0 {
			if i == 0 {
				return min(histMin, h.max)
			}
			return min(histMin*math.Pow(histGrowth, float64(i)), h.max)
		}
	}
	return h.max
}

func (h *hist) percentiles() Percentiles {
	if h.n == 0 {
		return Percentiles{}
	}
	return Percentiles{
		Count: int64(h.n),
		Mean:  round3(h.sum / h.n),
		P50:   round3(h.quantile(0.50)),
		P90:   round3(h.quantile(0.90)),
		P99:   round3(h.quantile(0.99)),
		Max:   round3(h.max),
	}
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }
