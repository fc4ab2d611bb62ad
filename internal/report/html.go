package report

import (
	"bufio"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"strconv"
	"strings"
)

//go:embed report.html.tmpl
var htmlTemplate string

// WriteHTML writes rep as one self-contained HTML file: no script, no
// request to any network (a Content-Security-Policy forbids both), charts
// drawn as inline SVG. Every value from mail or logs goes through
// html/template's contextual escaping.
func WriteHTML(w io.Writer, rep *Report) error {
	t, err := template.New("report").Funcs(template.FuncMap{
		"units": units,
		"dur":   dur,
		"pct":   pct,
		"f3":    func(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) },
		"rate":  func(v float64) string { return strconv.FormatFloat(100*v, 'f', 1, 64) + "%" },
		"pair":  func(name string, p Percentiles) latRow { return latRow{name, p} },
		"date": func(r *Report) string {
			return r.From.Format("2006-01-02 15:04") + " – " + r.To.Format("2006-01-02 15:04")
		},
	}).Parse(htmlTemplate)
	if err != nil {
		return fmt.Errorf("report template: %w", err)
	}
	b := bufio.NewWriter(w)
	if err := t.Execute(b, htmlData{Report: rep, Traffic: trafficChart(rep), Status: statusChart(rep), Domains: domainChart(rep)}); err != nil {
		return fmt.Errorf("report html: %w", err)
	}
	return b.Flush()
}

type latRow struct {
	Name string
	P    Percentiles
}

type htmlData struct {
	*Report
	Traffic lineChart
	Status  barChart
	Domains barChart
}

// lineChart is a time series drawn as SVG polylines.
type lineChart struct {
	Width, Height int
	Series        []series
	XLabels       []axisLabel
	YLabels       []axisLabel
	Points        []point // one per bucket and series, with a tooltip
}

type series struct {
	Name, Color, Points string
}

type axisLabel struct {
	X, Y float64
	Text string
}

type point struct {
	X, Y  float64
	Color string
	Title string
	Value int64
}

const (
	chartW, chartH = 900, 260
	padL, padB     = 50, 30
)

func trafficChart(rep *Report) lineChart {
	c := lineChart{Width: chartW, Height: chartH}
	n := len(rep.Traffic)
	if n == 0 {
		return c
	}
	var top int64 = 1
	for _, b := range rep.Traffic {
		top = max(top, b.Received, b.Delivered, b.Deferred, b.Bounced, b.Rejected)
	}
	plotW, plotH := float64(chartW-padL-10), float64(chartH-padB-10)
	x := func(i int) float64 {
		if n == 1 {
			return float64(padL) + plotW/2
		}
		return float64(padL) + plotW*float64(i)/float64(n-1)
	}
	y := func(v int64) float64 { return 10 + plotH - plotH*float64(v)/float64(top) }
	layout := "01-02 15h"
	if rep.TrafficStep == "day" {
		layout = "2006-01-02"
	}
	for _, s := range [...]struct {
		name, color string
		get         func(Counts) int64
	}{
		{"received", "#2b6cb0", func(c Counts) int64 { return c.Received }},
		{"delivered", "#2f855a", func(c Counts) int64 { return c.Delivered }},
		{"deferred", "#d69e2e", func(c Counts) int64 { return c.Deferred }},
		{"bounced", "#c53030", func(c Counts) int64 { return c.Bounced }},
		{"rejected", "#6b46c1", func(c Counts) int64 { return c.Rejected }},
	} {
		var pts strings.Builder
		for i, b := range rep.Traffic {
			v := s.get(b.Counts)
			fmt.Fprintf(&pts, "%.1f,%.1f ", x(i), y(v))
			if n <= 400 {
				c.Points = append(c.Points, point{X: x(i), Y: y(v), Color: s.color, Value: v,
					Title: b.Start.Format(layout) + " " + s.name + ": " + strconv.FormatInt(v, 10)})
			}
		}
		c.Series = append(c.Series, series{Name: s.name, Color: s.color, Points: strings.TrimSpace(pts.String())})
	}
	step := max(1, n/8)
	for i := 0; i < n; i += step {
		c.XLabels = append(c.XLabels, axisLabel{X: x(i), Y: float64(chartH - 8), Text: rep.Traffic[i].Start.Format(layout)})
	}
	for _, f := range [...]float64{0, 0.5, 1} {
		v := int64(f * float64(top))
		c.YLabels = append(c.YLabels, axisLabel{X: padL - 6, Y: y(v) + 4, Text: strconv.FormatInt(v, 10)})
	}
	return c
}

// barChart is a horizontal bar chart.
type barChart struct {
	Width, Height int
	Bars          []bar
}

type bar struct {
	Y, W       float64
	Label      string
	Value      int64
	Color      string
	ValueLabel string
}

func bars(items []bar) barChart {
	const rowH, labelW, maxW = 24, 260, 560
	var top int64 = 1
	for _, b := range items {
		top = max(top, b.Value)
	}
	c := barChart{Width: labelW + maxW + 80, Height: rowH*len(items) + 10}
	for i, b := range items {
		b.Y = float64(5 + i*rowH)
		b.W = max(1, float64(maxW)*float64(b.Value)/float64(top))
		b.ValueLabel = strconv.FormatInt(b.Value, 10)
		if len(b.Label) > 40 {
			b.Label = trim(b.Label, 40)
		}
		c.Bars = append(c.Bars, b)
	}
	return c
}

func statusChart(rep *Report) barChart {
	t := rep.Totals
	return bars([]bar{
		{Label: "delivered", Value: t.Delivered, Color: "#2f855a"},
		{Label: "forwarded", Value: t.Forwarded, Color: "#38a169"},
		{Label: "deferrals", Value: t.Deferrals, Color: "#d69e2e"},
		{Label: "bounced", Value: t.Bounced, Color: "#c53030"},
		{Label: "rejected", Value: t.Rejected, Color: "#6b46c1"},
		{Label: "reject warnings", Value: t.RejectWarnings, Color: "#805ad5"},
		{Label: "held", Value: t.Held, Color: "#718096"},
		{Label: "discarded", Value: t.Discarded, Color: "#4a5568"},
	})
}

func domainChart(rep *Report) barChart {
	var items []bar
	for i, d := range rep.RecipientDomains {
		if i == 15 {
			break
		}
		items = append(items, bar{Label: d.Name, Value: d.Delivered, Color: "#2b6cb0"})
	}
	return bars(items)
}
