// Package deploy_test validates the deployment files in this directory.
//
// No Docker engine, Kubernetes cluster or systemd is needed, so what is
// validated, and how:
//
//   - Every YAML file parses, and every JSON file.
//   - Dockerfile: its go build uses the same flags as `make build` (both
//     files parsed and compared); the final image runs as a numeric non-root
//     user with the entrypoint, command and port walscribe needs. The image
//     itself is not built here; TestComposeDemo runs the Dockerfile's build
//     command outside Docker and uses the binary it makes.
//   - compose.yaml: services, dependencies, mounts of files that exist,
//     environment variable names that walscribe reads, and the walscribe
//     configuration it mounts loads with that environment. TestComposeDemo
//     starts a real PostgreSQL 15 with the compose file's settings, runs the
//     demo's init SQL, walscribe setup and run with the compose environment,
//     and the demo traffic, and checks the trail, /readyz and /metrics.
//   - Kubernetes manifests: kinds, probes, ports and names that refer to each
//     other, security context, resources, and the ConfigMap's configuration
//     loads with the Deployment's environment; `kubectl kustomize` when
//     kubectl is installed.
//   - Grafana dashboard and alert rules: every metric they name exists in the
//     metrics package's registry (with labels it has, and rate() only over
//     counters); `promtool check rules`, `promtool check config` and
//     `promtool test rules` when promtool is installed (Debian: prometheus),
//     also on the dashboard's expressions.
//   - systemd unit: the hardening and reload directives;
//     `systemd-analyze verify` and `systemd-analyze security --offline` when
//     systemd-analyze is installed.
package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/walscribe/walscribe/config"
	"github.com/walscribe/walscribe/internal/pgtest"
	"go.uber.org/zap"

	"github.com/walscribe/walscribe/metrics"
	"github.com/walscribe/walscribe/watch"
)

// root is the repository root, seen from this package's directory.
const root = ".."

// ---------------------------------------------------------------------------
// Every file parses.

func TestFilesParse(t *testing.T) {
	var files []string
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch filepath.Ext(path) {
		case ".yaml", ".yml", ".json":
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 10 {
		t.Fatalf("found %d YAML and JSON files under deploy/, want the deployment files: %v", len(files), files)
	}
	for _, path := range files {
		t.Run(path, func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if filepath.Ext(path) == ".json" {
				var v any
				if err := json.Unmarshal(data, &v); err != nil {
					t.Fatalf("not valid JSON: %v", err)
				}
				return
			}
			docs, err := yamlDocs(data)
			if err != nil {
				t.Fatalf("not valid YAML: %v", err)
			}
			if len(docs) == 0 {
				t.Fatal("no YAML document")
			}
		})
	}
}

// yamlDocs decodes every document of a YAML stream.
func yamlDocs(data []byte) ([]any, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []any
	for {
		var v any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if v != nil {
			docs = append(docs, v)
		}
	}
}

// decodeYAML decodes a single-document YAML file into v, refusing keys v
// has no field for when strict.
func decodeYAML(t *testing.T, path string, v any, strict bool) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(strict)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// ---------------------------------------------------------------------------
// The metrics walscribe exports, and the PromQL that names them.

// metricInfo is one metric name as Prometheus sees it: histograms export
// name_bucket, name_sum and name_count.
type metricInfo struct {
	typ    string // COUNTER, GAUGE, HISTOGRAM, SUMMARY, UNTYPED: of the family
	labels map[string]bool
}

// exported returns every series name the metrics package exports, from
// metrics.New on a fresh registry. The vectors that have no series until
// walscribe uses them are given one, so that Gather shows them; every
// collector the registry describes must then have been gathered.
func exported(t *testing.T) map[string]metricInfo {
	t.Helper()
	reg := prometheus.NewRegistry()
	m := metrics.New(reg, "test")
	m.EntriesWritten.WithLabelValues("public", "orders", "insert").Inc()
	m.SetWALStatus("reserved")
	// The watches' metrics, as walscribe run registers them when watches
	// are configured.
	if _, err := watch.New(watch.Config{Rules: []watch.Rule{{Name: "bulk_deletes", Kind: watch.Threshold, Count: 5}}},
		watch.Deps{Log: zap.NewNop(), Registerer: reg, Recorder: nowhere{}}); err != nil {
		t.Fatal(err)
	}

	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]metricInfo{}
	for _, mf := range families {
		info := metricInfo{typ: mf.GetType().String(), labels: map[string]bool{}}
		for _, metric := range mf.GetMetric() {
			for _, l := range metric.GetLabel() {
				info.labels[l.GetName()] = true
			}
		}
		name := mf.GetName()
		switch info.typ {
		case "HISTOGRAM":
			bucket := metricInfo{typ: info.typ, labels: withKeys(info.labels, "le")}
			out[name+"_bucket"] = bucket
			out[name+"_sum"] = info
			out[name+"_count"] = info
		case "SUMMARY":
			out[name] = metricInfo{typ: info.typ, labels: withKeys(info.labels, "quantile")}
			out[name+"_sum"] = info
			out[name+"_count"] = info
		default:
			out[name] = info
		}
	}

	// Names from the collectors' descriptions: a vector with no series is
	// described but not gathered.
	descs := make(chan *prometheus.Desc, 256)
	go func() { reg.Describe(descs); close(descs) }()
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	for d := range descs {
		name := fqName.FindStringSubmatch(d.String())
		if name == nil {
			t.Fatalf("cannot read the name of %s", d)
		}
		_, plain := out[name[1]]
		_, hist := out[name[1]+"_count"]
		if !plain && !hist {
			t.Fatalf("metric %s is registered but has no series: give it one in exported() (deploy_test.go) so that its type and labels are known", name[1])
		}
	}
	if len(out) < 40 {
		t.Fatalf("only %d series names gathered; the Go and process collectors are missing?", len(out))
	}
	return out
}

// nowhere records nothing: the watches' delivery series exist only with a
// recorder.
type nowhere struct{}

func (nowhere) Record(context.Context, string, string, any) (int64, error) { return 0, nil }

func withKeys(m map[string]bool, extra ...string) map[string]bool {
	out := make(map[string]bool, len(m)+len(extra))
	for k := range m {
		out[k] = true
	}
	for _, k := range extra {
		out[k] = true
	}
	return out
}

// targetLabels are the labels Prometheus adds to every series of a target:
// job and instance, and what the Prometheus Operator adds in Kubernetes.
var targetLabels = map[string]bool{"job": true, "instance": true, "namespace": true, "pod": true,
	"service": true, "container": true, "endpoint": true}

// selector is one vector selector of a PromQL expression.
type selector struct {
	metric string   // "" when the selector has no name
	labels []string // label names of its matchers
	fn     string   // the innermost function or aggregation around it
}

var (
	promAggregations = set("sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
		"bottomk", "topk", "quantile", "limitk", "limit_ratio")
	promGrouping = set("by", "without", "on", "ignoring", "group_left", "group_right")
	promKeywords = set("and", "or", "unless", "bool", "offset", "atan2", "inf", "nan")
)

func set(words ...string) map[string]bool {
	m := make(map[string]bool, len(words))
	for _, w := range words {
		m[w] = true
	}
	return m
}

// parsePromQL finds the vector selectors of a PromQL expression. It is a
// scanner, not a parser: it knows strings, label matchers, range brackets,
// grouping clauses, keywords, functions and aggregations, and takes any
// other name for a metric. promtool checks the syntax when installed.
func parsePromQL(expr string) ([]selector, error) {
	var (
		out     []selector
		stack   []string // function names of the open parentheses
		pending string   // function or aggregation whose "(" comes next
	)
	s := expr
	i := 0
	top := func() string {
		for j := len(stack) - 1; j >= 0; j-- {
			if stack[j] != "" {
				return stack[j]
			}
		}
		return ""
	}
	skipSpace := func(k int) int {
		for k < len(s) && strings.ContainsRune(" \t\r\n", rune(s[k])) {
			k++
		}
		return k
	}
	for i < len(s) {
		c := s[i]
		switch {
		case strings.ContainsRune(" \t\r\n", rune(c)):
			i++
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			end, err := skipString(s, i)
			if err != nil {
				return nil, err
			}
			i = end
		case c == '[':
			j := strings.IndexByte(s[i:], ']')
			if j < 0 {
				return nil, fmt.Errorf("unclosed [ at %d", i)
			}
			i += j + 1
		case c == '{':
			labels, name, end, err := parseMatchers(s, i)
			if err != nil {
				return nil, err
			}
			out = append(out, selector{metric: name, labels: labels, fn: top()})
			i = end
		case c == '(':
			stack = append(stack, pending)
			pending = ""
			i++
		case c == ')':
			if len(stack) == 0 {
				return nil, fmt.Errorf("unbalanced ) at %d", i)
			}
			stack = stack[:len(stack)-1]
			i++
		case c == '$':
			// A Grafana variable outside a string or brackets.
			i++
			for i < len(s) && (isIdent(s[i]) || s[i] == '{' || s[i] == '}') {
				i++
			}
		case c >= '0' && c <= '9' || c == '.':
			for i < len(s) && (isIdent(s[i]) || s[i] == '.') {
				i++
			}
		case isIdentStart(c):
			j := i
			for j < len(s) && isIdent(s[j]) {
				j++
			}
			word := s[i:j]
			i = j
			k := skipSpace(i)
			switch {
			case promGrouping[word]:
				if k < len(s) && s[k] == '(' {
					end := strings.IndexByte(s[k:], ')')
					if end < 0 {
						return nil, fmt.Errorf("unclosed %s ( at %d", word, k)
					}
					i = k + end + 1
				}
			case promKeywords[word]:
			case promAggregations[word] || k < len(s) && s[k] == '(':
				pending = word
			default:
				sel := selector{metric: word, fn: top()}
				if k < len(s) && s[k] == '{' {
					labels, name, end, err := parseMatchers(s, k)
					if err != nil {
						return nil, err
					}
					if name != "" {
						return nil, fmt.Errorf("%s has a __name__ matcher too", word)
					}
					sel.labels = labels
					i = end
				}
				out = append(out, sel)
			}
		default:
			i++
		}
	}
	if len(stack) > 0 {
		return nil, errors.New("unbalanced (")
	}
	return out, nil
}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isIdent(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }

func skipString(s string, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		if s[j] == '\\' && q != '`' {
			j++
			continue
		}
		if s[j] == q {
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unterminated string at %d", i)
}

// parseMatchers reads {label op "value", ...} at s[i], returning the label
// names, the metric name when one is given as __name__, and where it ends.
func parseMatchers(s string, i int) (labels []string, name string, end int, err error) {
	matcher := regexp.MustCompile(`^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*`)
	i++ // {
	for {
		for i < len(s) && strings.ContainsRune(" \t\r\n,", rune(s[i])) {
			i++
		}
		if i >= len(s) {
			return nil, "", 0, errors.New("unclosed {")
		}
		if s[i] == '}' {
			return labels, name, i + 1, nil
		}
		m := matcher.FindStringSubmatchIndex(s[i:])
		if m == nil {
			return nil, "", 0, fmt.Errorf("cannot read the label matcher at %q", s[i:])
		}
		label := s[i+m[2] : i+m[3]]
		i += m[1]
		if i >= len(s) || !strings.ContainsRune("\"'`", rune(s[i])) {
			return nil, "", 0, fmt.Errorf("label %s: value is not a string", label)
		}
		j, err := skipString(s, i)
		if err != nil {
			return nil, "", 0, err
		}
		if label == "__name__" {
			name, _ = strconv.Unquote(s[i:j])
		} else {
			labels = append(labels, label)
		}
		i = j
	}
}

// checkExpr reports the problems of one PromQL expression: metrics that do
// not exist, labels they do not have, rate() over something other than a
// counter, deriv() over something other than a gauge. extra are further
// metric names allowed (such as up), with target labels only.
func checkExpr(expr string, known map[string]metricInfo, extra ...string) []string {
	sels, err := parsePromQL(expr)
	if err != nil {
		return []string{err.Error()}
	}
	if len(sels) == 0 {
		return []string{"names no metric"}
	}
	var problems []string
	for _, sel := range sels {
		if sel.metric == "" {
			problems = append(problems, "a selector without a metric name")
			continue
		}
		info, ok := known[sel.metric]
		if !ok && slices.Contains(extra, sel.metric) {
			info, ok = metricInfo{typ: "GAUGE", labels: map[string]bool{}}, true
		}
		if !ok {
			problems = append(problems, fmt.Sprintf("metric %s does not exist", sel.metric))
			continue
		}
		for _, l := range sel.labels {
			if !info.labels[l] && !targetLabels[l] {
				problems = append(problems, fmt.Sprintf("metric %s has no label %s", sel.metric, l))
			}
		}
		histogramPart := (info.typ == "HISTOGRAM" || info.typ == "SUMMARY") &&
			(strings.HasSuffix(sel.metric, "_bucket") || strings.HasSuffix(sel.metric, "_sum") || strings.HasSuffix(sel.metric, "_count"))
		switch sel.fn {
		case "rate", "irate", "increase", "resets":
			if info.typ != "COUNTER" && !histogramPart {
				problems = append(problems, fmt.Sprintf("%s() over %s, a %s: use it on counters", sel.fn, sel.metric, strings.ToLower(info.typ)))
			}
		case "deriv", "delta", "idelta", "predict_linear":
			if info.typ != "GAUGE" {
				problems = append(problems, fmt.Sprintf("%s() over %s, a %s: use it on gauges", sel.fn, sel.metric, strings.ToLower(info.typ)))
			}
		}
	}
	return problems
}

func TestPromQLScanner(t *testing.T) {
	known := map[string]metricInfo{
		"a_total":   {typ: "COUNTER", labels: set("kind")},
		"g":         {typ: "GAUGE", labels: set("status")},
		"h_bucket":  {typ: "HISTOGRAM", labels: set("le")},
		"h_count":   {typ: "HISTOGRAM", labels: set()},
		"h_sum":     {typ: "HISTOGRAM", labels: set()},
		"process_x": {typ: "GAUGE", labels: set()},
	}
	cases := []struct {
		expr     string
		metrics  []string
		problems []string
	}{
		{expr: `sum by (kind) (rate(a_total{job=~"$job", kind!="x"}[$__rate_interval]))`, metrics: []string{"a_total"}},
		{expr: `histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m])))`, metrics: []string{"h_bucket"}},
		{expr: `max without (instance, pod) (g{status=~"lost|missing"}) == 1`, metrics: []string{"g"}},
		{expr: "increase(a_total[1h]) > 0\n or (a_total > 0 and (time() - process_x) < 3600)",
			metrics: []string{"a_total", "a_total", "process_x"}},
		{expr: `sum(rate(h_sum[5m])) / sum(rate(h_count[5m]))`, metrics: []string{"h_sum", "h_count"}},
		{expr: `label_replace(g, "dst", "$1", "status", "(.*)") offset 5m`, metrics: []string{"g"}},
		{expr: `rate(a_totl[5m])`, metrics: []string{"a_totl"}, problems: []string{"metric a_totl does not exist"}},
		{expr: `g{kind="x"}`, metrics: []string{"g"}, problems: []string{"metric g has no label kind"}},
		{expr: `rate(g[5m])`, metrics: []string{"g"}, problems: []string{"rate() over g, a gauge: use it on counters"}},
		{expr: `deriv(a_total[5m])`, metrics: []string{"a_total"}, problems: []string{"deriv() over a_total, a counter: use it on gauges"}},
		{expr: `sum(rate(a_total[5m])`, problems: []string{"unbalanced ("}},
	}
	for _, tc := range cases {
		t.Run(tc.expr, func(t *testing.T) {
			sels, err := parsePromQL(tc.expr)
			if err == nil {
				var got []string
				for _, s := range sels {
					got = append(got, s.metric)
				}
				if !slices.Equal(got, tc.metrics) {
					t.Errorf("metrics %v, want %v", got, tc.metrics)
				}
			}
			if got := checkExpr(tc.expr, known); !slices.Equal(got, tc.problems) {
				t.Errorf("problems %q, want %q", got, tc.problems)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Grafana dashboard.

type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Datasource *datasourceRef  `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int            `json:"id"`
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	Datasource *datasourceRef `json:"datasource"`
	GridPos    struct{ H, W, X, Y int }
	Targets    []struct {
		RefID      string         `json:"refId"`
		Expr       string         `json:"expr"`
		Datasource *datasourceRef `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // of a collapsed row
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

const dashboardPath = "grafana/walscribe-dashboard.json"

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	data, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	return d
}

// dashboardExprs returns the expressions of every panel, by panel title and
// refId, and of the query variables.
func dashboardExprs(t *testing.T, d dashboard) map[string]string {
	t.Helper()
	exprs := map[string]string{}
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			walk(p.Panels)
			for _, tg := range p.Targets {
				exprs[fmt.Sprintf("panel %d %q %s", p.ID, p.Title, tg.RefID)] = tg.Expr
			}
		}
	}
	walk(d.Panels)
	labelValues := regexp.MustCompile(`^label_values\((?:(.+),)?\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			var s string
			if err := json.Unmarshal(v.Query, &s); err != nil {
				t.Fatalf("variable %s: query is neither an object nor a string", v.Name)
			}
			q.Query = s
		}
		m := labelValues.FindStringSubmatch(q.Query)
		if m == nil || m[1] == "" {
			t.Fatalf("variable %s: query %q is not label_values(metric, label)", v.Name, q.Query)
		}
		exprs["variable "+v.Name] = m[1]
	}
	return exprs
}

func TestDashboard(t *testing.T) {
	d := readDashboard(t)
	known := exported(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q, title %q: both are needed for provisioning and links", d.UID, d.Title)
	}

	t.Run("datasource variable", func(t *testing.T) {
		found := false
		for _, v := range d.Templating.List {
			if v.Type == "datasource" && v.Name == "datasource" && string(v.Query) == `"prometheus"` {
				found = true
			}
			if v.Type == "query" && (v.Datasource == nil || v.Datasource.UID != "${datasource}") {
				t.Errorf("variable %s does not query ${datasource}", v.Name)
			}
		}
		if !found {
			t.Error(`no variable "datasource" of type datasource for prometheus`)
		}
	})

	t.Run("panels", func(t *testing.T) {
		ids := map[int]string{}
		var walk func(ps []panel)
		walk = func(ps []panel) {
			for _, p := range ps {
				if other, dup := ids[p.ID]; dup || p.ID == 0 {
					t.Errorf("panel %q: id %d is zero or also %q's", p.Title, p.ID, other)
				}
				ids[p.ID] = p.Title
				if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X < 0 || p.GridPos.X+p.GridPos.W > 24 {
					t.Errorf("panel %q: gridPos %+v is outside the 24 columns", p.Title, p.GridPos)
				}
				walk(p.Panels)
				if p.Type == "row" {
					continue
				}
				if p.Title == "" {
					t.Errorf("panel %d has no title", p.ID)
				}
				if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
					t.Errorf("panel %q: datasource is %+v, want the ${datasource} variable", p.Title, p.Datasource)
				}
				if len(p.Targets) == 0 {
					t.Errorf("panel %q has no query", p.Title)
				}
				refs := map[string]bool{}
				for _, tg := range p.Targets {
					if tg.Expr == "" || tg.RefID == "" || refs[tg.RefID] {
						t.Errorf("panel %q: query %q with refId %q (empty or repeated)", p.Title, tg.Expr, tg.RefID)
					}
					refs[tg.RefID] = true
					if tg.Datasource != nil && tg.Datasource.UID != "${datasource}" {
						t.Errorf("panel %q query %s: datasource %+v, want ${datasource}", p.Title, tg.RefID, tg.Datasource)
					}
				}
			}
		}
		walk(d.Panels)
		if len(ids) < 20 {
			t.Errorf("%d panels; the dashboard should cover throughput, lag, the slot, errors, batches and the process", len(ids))
		}
	})

	exprs := dashboardExprs(t, d)
	for _, where := range sortedKeys(exprs) {
		t.Run(where, func(t *testing.T) {
			for _, p := range checkExpr(exprs[where], known) {
				t.Errorf("%s: %s", exprs[where], p)
			}
		})
	}

	// Every metric of walscribe's own is on the dashboard.
	t.Run("covers every walscribe metric", func(t *testing.T) {
		used := map[string]bool{}
		for _, e := range exprs {
			sels, _ := parsePromQL(e)
			for _, s := range sels {
				used[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(s.metric, "_bucket"), "_sum"), "_count")] = true
			}
		}
		for name, info := range known {
			base := name
			if info.typ == "HISTOGRAM" {
				base = strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
			}
			if strings.HasPrefix(name, "walscribe_") && !used[base] {
				t.Errorf("metric %s is on no panel of %s: add one", name, dashboardPath)
			}
		}
	})
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ---------------------------------------------------------------------------
// Prometheus: alert rules, configuration.

type ruleFile struct {
	Groups []ruleGroup `yaml:"groups"`
}

type ruleGroup struct {
	Name  string `yaml:"name"`
	Rules []rule `yaml:"rules"`
}

type rule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record,omitempty"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty"`
	Annotations map[string]string `yaml:"annotations,omitempty"`
}

const alertsPath = "prometheus/alerts.yaml"

func TestAlertRules(t *testing.T) {
	var rf ruleFile
	decodeYAML(t, alertsPath, &rf, true)
	known := exported(t)

	alerts := map[string]rule{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if _, dup := alerts[r.Alert]; dup || r.Alert == "" {
				t.Errorf("alert %q: empty or repeated name", r.Alert)
			}
			alerts[r.Alert] = r
		}
	}
	// What the rules must watch, from the operator's point of view.
	want := []string{"WalscribeDown", "WalscribeAbsent", "WalscribeNotStreaming", "WalscribeSlotInactive",
		"WalscribeSlotWALUnreserved", "WalscribeSlotLost", "WalscribeLagHigh", "WalscribeLagBytesHigh",
		"WalscribeRetainedWALHigh", "WalscribeGap", "WalscribeErrors", "WalscribeSinkDown"}
	for _, name := range want {
		if _, ok := alerts[name]; !ok {
			t.Errorf("no alert %s", name)
		}
	}

	for _, name := range sortedKeys(alerts) {
		r := alerts[name]
		t.Run(name, func(t *testing.T) {
			for _, p := range checkExpr(r.Expr, known, "up") {
				t.Errorf("expr %q: %s", r.Expr, p)
			}
			if sev := r.Labels["severity"]; sev != "critical" && sev != "warning" && sev != "info" {
				t.Errorf("severity %q, want critical, warning or info", sev)
			}
			if r.For != "" {
				if d, err := time.ParseDuration(r.For); err != nil || d <= 0 {
					t.Errorf("for: %q is not a positive duration", r.For)
				}
			}
			if r.Annotations["summary"] == "" {
				t.Error("no summary")
			}
			desc := strings.ToLower(r.Annotations["description"])
			if !strings.Contains(desc, "check") && !strings.Contains(desc, "see ") && !strings.Contains(desc, "fix") {
				t.Errorf("the description does not say what to check: %q", r.Annotations["description"])
			}
		})
	}

	// The rules name the scrape job that prometheus.yaml and the
	// ServiceMonitor (job = the Service's name) give walscribe.
	t.Run("job name", func(t *testing.T) {
		var pc struct {
			RuleFiles     []string `yaml:"rule_files"`
			ScrapeConfigs []struct {
				JobName       string `yaml:"job_name"`
				StaticConfigs []struct {
					Targets []string `yaml:"targets"`
				} `yaml:"static_configs"`
			} `yaml:"scrape_configs"`
		}
		decodeYAML(t, "prometheus/prometheus.yaml", &pc, false)
		if len(pc.ScrapeConfigs) != 1 || pc.ScrapeConfigs[0].JobName != "walscribe" {
			t.Fatalf("prometheus.yaml scrape_configs %+v, want one job named walscribe", pc.ScrapeConfigs)
		}
		for _, name := range []string{"WalscribeDown", "WalscribeAbsent"} {
			if !strings.Contains(alerts[name].Expr, `job="walscribe"`) {
				t.Errorf("%s: %q does not select job=\"walscribe\"", name, alerts[name].Expr)
			}
		}
		svc := kubeObject(t, "service.yaml", "Service")
		if svc.Metadata.Name != "walscribe" {
			t.Errorf("the Service is named %q: the ServiceMonitor's job label would not be walscribe", svc.Metadata.Name)
		}
		if !slices.Equal(pc.RuleFiles, []string{filepath.Base(alertsPath)}) {
			t.Errorf("prometheus.yaml rule_files %v, want [%s] (beside it)", pc.RuleFiles, filepath.Base(alertsPath))
		}
	})

	// The Prometheus Operator's copy holds the same rules.
	t.Run("PrometheusRule is a copy", func(t *testing.T) {
		var pr struct {
			APIVersion string   `yaml:"apiVersion"`
			Kind       string   `yaml:"kind"`
			Spec       ruleFile `yaml:"spec"`
		}
		decodeYAML(t, "kubernetes/prometheusrule.yaml", &pr, false)
		if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Kind != "PrometheusRule" {
			t.Errorf("%s %s, want monitoring.coreos.com/v1 PrometheusRule", pr.APIVersion, pr.Kind)
		}
		if !reflect.DeepEqual(pr.Spec, rf) {
			t.Errorf("kubernetes/prometheusrule.yaml spec.groups differ from %s: copy its groups over", alertsPath)
		}
	})
}

// promtool runs promtool in dir, or skips the test when it is not installed.
func promtool(t *testing.T, dir string, args ...string) {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed (Debian: apt-get install prometheus): the rules and the configuration were checked only by this package's own scanner")
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
}

func TestPromtool(t *testing.T) {
	cases := []struct {
		name string
		dir  string
		args []string
	}{
		{"check rules", "prometheus", []string{"check", "rules", "alerts.yaml"}},
		{"check config", "prometheus", []string{"check", "config", "prometheus.yaml"}},
		{"test rules", "prometheus", []string{"test", "rules", "alerts.test.yaml"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { promtool(t, tc.dir, tc.args...) })
	}

	// The dashboard's expressions, with Grafana's variables filled in, as
	// recording rules: promtool parses them with Prometheus' own parser.
	t.Run("dashboard expressions", func(t *testing.T) {
		exprs := dashboardExprs(t, readDashboard(t))
		vars := regexp.MustCompile(`\$\{?(\w+)\}?`)
		values := map[string]string{"__rate_interval": "1m", "__interval": "1m", "__range": "1h"}
		var rf ruleFile
		rf.Groups = []ruleGroup{{Name: "dashboard"}}
		for i, where := range sortedKeys(exprs) {
			if strings.HasPrefix(where, "variable ") {
				continue // label_values(...) is Grafana's, not PromQL
			}
			expr := vars.ReplaceAllStringFunc(exprs[where], func(v string) string {
				if val, ok := values[vars.FindStringSubmatch(v)[1]]; ok {
					return val
				}
				return ".*"
			})
			rf.Groups[0].Rules = append(rf.Groups[0].Rules, rule{Record: fmt.Sprintf("dashboard:query_%d", i), Expr: expr})
		}
		data, err := yaml.Marshal(rf)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "dashboard.rules.yaml"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		promtool(t, dir, "check", "rules", "dashboard.rules.yaml")
	})
}

// ---------------------------------------------------------------------------
// Dockerfile and Makefile.

// goBuild is one `go build` command line.
type goBuild struct {
	env     map[string]string
	flags   map[string]string // flag → value ("" for -trimpath and the like)
	ldflags []string
	out     string
	pkg     string
}

// versionHolder stands for the version in both files.
const versionHolder = "<version>"

// parseGoBuild reads `[VAR=value ...] go build [flags] package` from words.
func parseGoBuild(words []string) (goBuild, error) {
	b := goBuild{env: map[string]string{}, flags: map[string]string{}}
	assign := regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=`)
	for len(words) > 0 && assign.MatchString(words[0]) {
		k, v, _ := strings.Cut(words[0], "=")
		b.env[k] = v
		words = words[1:]
	}
	if len(words) < 2 || words[0] != "go" || words[1] != "build" {
		return b, fmt.Errorf("not a go build command: %q", words)
	}
	valued := set("-ldflags", "-o", "-tags", "-gcflags", "-mod", "-p", "-buildmode", "-buildvcs")
	for i := 2; i < len(words); i++ {
		w := words[i]
		if !strings.HasPrefix(w, "-") {
			if b.pkg != "" {
				return b, fmt.Errorf("two packages: %s and %s", b.pkg, w)
			}
			b.pkg = w
			continue
		}
		name, value, hasValue := strings.Cut(w, "=")
		if !hasValue && valued[name] {
			if i+1 >= len(words) {
				return b, fmt.Errorf("%s has no value", name)
			}
			i++
			value = words[i]
		}
		switch name {
		case "-o":
			b.out = value
		case "-ldflags":
			b.ldflags = strings.Fields(value)
		default:
			b.flags[name] = value
		}
	}
	return b, nil
}

// shellWords splits a shell command line into words: quotes, backslashes,
// and the operators ; && || as words of their own. Variables are left as
// they are.
func shellWords(s string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		in    bool // a word is started
	)
	flush := func() {
		if in {
			words = append(words, cur.String())
			cur.Reset()
			in = false
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			i++
			if s[i] != '\n' {
				cur.WriteByte(s[i])
				in = true
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated '")
			}
			cur.WriteString(s[i+1 : i+1+j])
			in = true
			i += j + 1
		case c == '"':
			j := i + 1
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
				}
				cur.WriteByte(s[j])
			}
			if j >= len(s) {
				return nil, errors.New(`unterminated "`)
			}
			in = true
			i = j
		case c == ' ' || c == '\t' || c == '\n':
			flush()
		case c == ';':
			flush()
			words = append(words, ";")
		case (c == '&' || c == '|') && i+1 < len(s) && s[i+1] == c:
			flush()
			words = append(words, string([]byte{c, c}))
			i++
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	flush()
	return words, nil
}

// commands splits words at ; && and ||.
func commands(words []string) [][]string {
	var out [][]string
	var cur []string
	for _, w := range words {
		if w == ";" || w == "&&" || w == "||" {
			out = append(out, cur)
			cur = nil
			continue
		}
		cur = append(cur, w)
	}
	return append(out, cur)
}

// makefileBuild returns the go build of the Makefile's build target, with
// its variables expanded and $(VERSION) as versionHolder.
func makefileBuild(t *testing.T) goBuild {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	assign := regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)\s*(\?=|:=|=)\s*(.*)$`)
	var recipe []string
	inBuild := false
	for _, line := range strings.Split(string(data), "\n") {
		if inBuild && strings.HasPrefix(line, "\t") {
			recipe = append(recipe, strings.TrimPrefix(line, "\t"))
			continue
		}
		inBuild = false
		if m := assign.FindStringSubmatch(line); m != nil {
			vars[m[1]] = m[3]
		}
		if strings.HasPrefix(line, "build:") {
			inBuild = true
		}
	}
	vars["VERSION"] = versionHolder
	ref := regexp.MustCompile(`\$\((\w+)\)`)
	expand := func(s string) string {
		for range 10 {
			s = ref.ReplaceAllStringFunc(s, func(r string) string { return vars[ref.FindStringSubmatch(r)[1]] })
		}
		return s
	}
	for _, line := range recipe {
		words, err := shellWords(expand(line))
		if err != nil {
			t.Fatalf("Makefile build recipe %q: %v", line, err)
		}
		for _, cmd := range commands(words) {
			if b, err := parseGoBuild(cmd); err == nil {
				return b
			}
		}
	}
	t.Fatalf("the Makefile's build target has no go build: %q", recipe)
	return goBuild{}
}

// dockerInstruction is one instruction of a Dockerfile, continuation lines
// joined.
type dockerInstruction struct {
	cmd  string // FROM, RUN, ...
	args string
}

func parseDockerfile(t *testing.T) []dockerInstruction {
	t.Helper()
	data, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var out []dockerInstruction
	var cur strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		if s := strings.TrimSpace(cur.String()); s != "" {
			cmd, args, _ := strings.Cut(s, " ")
			out = append(out, dockerInstruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)})
		}
		cur.Reset()
	}
	return out
}

// dockerfileBuild returns the go build of the Dockerfile's RUN
// instructions, with ${VERSION} as versionHolder.
func dockerfileBuild(t *testing.T, ins []dockerInstruction) goBuild {
	t.Helper()
	version := regexp.MustCompile(`\$\{VERSION\}|\$VERSION\b`)
	for _, in := range ins {
		if in.cmd != "RUN" || !strings.Contains(in.args, "go build") {
			continue
		}
		words, err := shellWords(version.ReplaceAllString(in.args, versionHolder))
		if err != nil {
			t.Fatalf("RUN %s: %v", in.args, err)
		}
		for len(words) > 0 && strings.HasPrefix(words[0], "--") { // --mount=...
			words = words[1:]
		}
		for _, cmd := range commands(words) {
			if b, err := parseGoBuild(cmd); err == nil {
				return b
			}
		}
	}
	t.Fatal("the Dockerfile has no RUN with go build")
	return goBuild{}
}

func TestDockerfile(t *testing.T) {
	ins := parseDockerfile(t)
	docker := dockerfileBuild(t, ins)
	mk := makefileBuild(t)

	t.Run("same build as make build", func(t *testing.T) {
		// Only the Dockerfile cross-compiles for the image's platform.
		dockerEnv := copyEnv(docker.env)
		delete(dockerEnv, "GOOS")
		delete(dockerEnv, "GOARCH")
		if !reflect.DeepEqual(dockerEnv, mk.env) {
			t.Errorf("environment %v, make build's %v", dockerEnv, mk.env)
		}
		if !reflect.DeepEqual(docker.flags, mk.flags) {
			t.Errorf("flags %v, make build's %v", docker.flags, mk.flags)
		}
		if !slices.Equal(docker.ldflags, mk.ldflags) {
			t.Errorf("-ldflags %q, make build's %q", docker.ldflags, mk.ldflags)
		}
		if docker.pkg != mk.pkg {
			t.Errorf("package %s, make build's %s", docker.pkg, mk.pkg)
		}
		if mk.env["CGO_ENABLED"] != "0" || !slices.Contains(mk.ldflags, "main.version="+versionHolder) {
			t.Errorf("make build: %+v, want CGO_ENABLED=0 and -X main.version=$(VERSION)", mk)
		}
	})

	var stages [][]dockerInstruction
	for _, in := range ins {
		if in.cmd == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			t.Fatalf("%s before the first FROM", in.cmd)
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], in)
	}
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a builder and a final image", len(stages))
	}
	final := stages[len(stages)-1]
	last := func(cmd string) string {
		v := ""
		for _, in := range final {
			if in.cmd == cmd {
				v = in.args
			}
		}
		return v
	}

	t.Run("builder matches go.mod", func(t *testing.T) {
		gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
		if m == nil {
			t.Fatal("go.mod has no go directive")
		}
		from := stages[0][0].args
		if !strings.Contains(from, "golang:"+string(m[1])+" ") && !strings.HasSuffix(from, "golang:"+string(m[1])) {
			t.Errorf("builder FROM %s, want golang:%s as go.mod says", from, m[1])
		}
	})

	t.Run("final image", func(t *testing.T) {
		user := last("USER")
		uid, _, _ := strings.Cut(user, ":")
		if n, err := strconv.Atoi(uid); err != nil || n == 0 {
			t.Errorf("USER %q: want a numeric non-root user, so that runAsNonRoot can verify it", user)
		}
		var entry []string
		if err := json.Unmarshal([]byte(last("ENTRYPOINT")), &entry); err != nil || len(entry) != 1 {
			t.Fatalf("ENTRYPOINT %s: want the walscribe binary in exec form", last("ENTRYPOINT"))
		}
		copied := false
		for _, in := range final {
			if in.cmd == "COPY" && strings.Contains(in.args, docker.out) && strings.HasSuffix(in.args, " "+entry[0]) {
				copied = true
			}
		}
		if !copied {
			t.Errorf("no COPY of the built %s to the ENTRYPOINT %s", docker.out, entry[0])
		}
		var cmd []string
		if err := json.Unmarshal([]byte(last("CMD")), &cmd); err != nil || !slices.Equal(cmd, []string{"run"}) {
			t.Errorf("CMD %s, want [\"run\"]", last("CMD"))
		}
		_, port, _ := strings.Cut(config.Default().HTTP.Listen, ":")
		if last("EXPOSE") != port {
			t.Errorf("EXPOSE %s, want %s, the port of the default http.listen", last("EXPOSE"), port)
		}
		if env := last("ENV"); env != "WALSCRIBE_HTTP_LISTEN=0.0.0.0:"+port {
			t.Errorf("ENV %s, want WALSCRIBE_HTTP_LISTEN=0.0.0.0:%s: the default listens on loopback only", env, port)
		}
		for _, in := range final {
			if in.cmd == "RUN" || in.cmd == "HEALTHCHECK" {
				t.Errorf("%s in the final image: distroless has no shell", in.cmd)
			}
		}
	})
}

// ---------------------------------------------------------------------------
// Environment variables walscribe reads.

// envVars returns the environment variables walscribe reads: one per key of
// config.Config (WALSCRIBE_<SECTION>_<KEY>), the list variables and
// WALSCRIBE_CONFIG.
func envVars(t *testing.T) map[string]bool {
	t.Helper()
	// Besides the configuration: WALSCRIBE_CONFIG, the list variables, and the
	// connections setup works through (its --admin-dsn and --admin-sink-dsn).
	out := set("WALSCRIBE_CONFIG", "WALSCRIBE_TABLES", "WALSCRIBE_EXCLUDE_TABLES", "WALSCRIBE_RETENTION_HOLDS", "WALSCRIBE_ADMIN_DSN", "WALSCRIBE_ADMIN_SINK_DSN")
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
			key := prefix + "_" + strings.ToUpper(name)
			switch f.Type.Kind() {
			case reflect.Struct:
				walk(key, f.Type)
			case reflect.Slice: // tables, exclude_tables: the list variables
			default:
				out[key] = true
			}
		}
	}
	walk("WALSCRIBE", reflect.TypeFor[config.Config]())

	// The example configuration documents the same variables.
	example, err := os.ReadFile("walscribe.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	documented := set()
	for _, m := range regexp.MustCompile(`WALSCRIBE_[A-Z][A-Z0-9_]*`).FindAllString(string(example), -1) {
		documented[m] = true
	}
	if !reflect.DeepEqual(documented, out) {
		t.Fatalf("the variables from config.Config %v differ from those walscribe.example.yaml documents %v", sortedKeys(out), sortedKeys(documented))
	}
	return out
}

// checkEnvNames reports WALSCRIBE_ variables walscribe does not read.
func checkEnvNames(t *testing.T, where string, names []string) {
	t.Helper()
	known := envVars(t)
	for _, n := range names {
		if strings.HasPrefix(n, "WALSCRIBE_") && !known[n] {
			t.Errorf("%s: walscribe reads no variable %s", where, n)
		}
	}
}

// setEnv makes env the only WALSCRIBE_ variables for the rest of the test.
func setEnv(t *testing.T, env map[string]string) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "WALSCRIBE_") {
			t.Setenv(k, v) // restored after the test
			os.Unsetenv(k)
		}
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
}

// ---------------------------------------------------------------------------
// compose.yaml.

type composeFile struct {
	Name     string                    `yaml:"name"`
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
	Ext      map[string]any            `yaml:",inline"` // x-... extension fields
}

type composeService struct {
	Image string `yaml:"image"`
	Build *struct {
		Context    string            `yaml:"context"`
		Dockerfile string            `yaml:"dockerfile"`
		Args       map[string]string `yaml:"args"`
	} `yaml:"build"`
	Command     []string          `yaml:"command"`
	Entrypoint  []string          `yaml:"entrypoint"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	Ports       []string          `yaml:"ports"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck *struct {
		Test     []string `yaml:"test"`
		Interval string   `yaml:"interval"`
		Timeout  string   `yaml:"timeout"`
		Retries  int      `yaml:"retries"`
	} `yaml:"healthcheck"`
	Restart         string `yaml:"restart"`
	StopGracePeriod string `yaml:"stop_grace_period"`
}

func readCompose(t *testing.T) composeFile {
	t.Helper()
	var c composeFile
	// Strict: a misspelled key of a service is an error here, as compose
	// would report it.
	decodeYAML(t, "compose.yaml", &c, true)
	return c
}

// mounts maps a service's container paths to host paths (relative to
// deploy/) for its bind mounts.
func (s composeService) mounts() map[string]string {
	out := map[string]string{}
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && (strings.HasPrefix(parts[0], ".") || strings.HasPrefix(parts[0], "/")) {
			out[parts[1]] = parts[0]
		}
	}
	return out
}

// hostPath finds the host file a service sees at container path p, through
// a bind mount of it or of a directory above it.
func (s composeService) hostPath(p string) (string, bool) {
	for target, source := range s.mounts() {
		if p == target {
			return source, true
		}
		if rel, ok := strings.CutPrefix(p, target+"/"); ok {
			return filepath.Join(source, rel), true
		}
	}
	return "", false
}

// postgresSettings returns the -c name=value settings of the postgres
// service's command.
func postgresSettings(t *testing.T, c composeFile) map[string]string {
	t.Helper()
	cmd := c.Services["postgres"].Command
	if len(cmd) == 0 || cmd[0] != "postgres" {
		t.Fatalf("postgres command %q does not start postgres", cmd)
	}
	settings := map[string]string{}
	for i := 1; i < len(cmd); i++ {
		if cmd[i] != "-c" || i+1 >= len(cmd) {
			t.Fatalf("postgres command %q: want -c name=value pairs", cmd)
		}
		k, v, ok := strings.Cut(cmd[i+1], "=")
		if !ok {
			t.Fatalf("postgres command: %q is not name=value", cmd[i+1])
		}
		settings[k] = v
		i++
	}
	return settings
}

func TestCompose(t *testing.T) {
	c := readCompose(t)
	for k := range c.Ext {
		if !strings.HasPrefix(k, "x-") {
			t.Errorf("unknown top-level key %q", k)
		}
	}
	for _, name := range []string{"postgres", "walscribe-setup", "walscribe", "traffic", "prometheus", "grafana"} {
		if _, ok := c.Services[name]; !ok {
			t.Errorf("no service %s", name)
		}
	}

	t.Run("postgres", func(t *testing.T) {
		pg := c.Services["postgres"]
		if !strings.HasPrefix(pg.Image, "postgres:15") {
			t.Errorf("image %s, want postgres:15", pg.Image)
		}
		s := postgresSettings(t, c)
		if s["wal_level"] != "logical" {
			t.Errorf("wal_level %q, want logical", s["wal_level"])
		}
		for _, k := range []string{"max_replication_slots", "max_wal_senders", "max_slot_wal_keep_size"} {
			if s[k] == "" {
				t.Errorf("%s is not set", k)
			}
		}
		if pg.Healthcheck == nil || len(pg.Healthcheck.Test) == 0 {
			t.Error("no healthcheck: walscribe-setup waits for service_healthy")
		}
		if pg.Environment["POSTGRES_DB"] == "" {
			t.Error("POSTGRES_DB is not set")
		}
	})

	t.Run("dependencies", func(t *testing.T) {
		want := []struct{ service, on, condition string }{
			{"walscribe-setup", "postgres", "service_healthy"},
			{"walscribe", "walscribe-setup", "service_completed_successfully"},
			// The traffic calls audit.set_context, which setup installs.
			{"traffic", "walscribe-setup", "service_completed_successfully"},
			{"prometheus", "walscribe", ""},
			{"grafana", "prometheus", ""},
		}
		for _, w := range want {
			dep, ok := c.Services[w.service].DependsOn[w.on]
			if !ok || w.condition != "" && dep.Condition != w.condition {
				t.Errorf("%s depends on %s with %+v, want condition %q", w.service, w.on, dep, w.condition)
			}
		}
		for name, s := range c.Services {
			for on := range s.DependsOn {
				if _, ok := c.Services[on]; !ok {
					t.Errorf("%s depends on %s, which is no service", name, on)
				}
			}
		}
		if c.Services["walscribe-setup"].Restart != "no" {
			t.Error(`walscribe-setup is one-shot: restart: "no"`)
		}
	})

	t.Run("walscribe services", func(t *testing.T) {
		for _, name := range []string{"walscribe-setup", "walscribe"} {
			s := c.Services[name]
			want := map[string]string{"walscribe-setup": "setup", "walscribe": "run"}[name]
			if !slices.Equal(s.Command, []string{want}) {
				t.Errorf("%s: command %q, want [%s]", name, s.Command, want)
			}
			if s.Build == nil || s.Build.Dockerfile != "deploy/Dockerfile" || filepath.Clean(s.Build.Context) != root {
				t.Errorf("%s: build %+v, want deploy/Dockerfile in the repository root", name, s.Build)
			}
			checkEnvNames(t, name, sortedKeys(s.Environment))
			cfg := s.Environment["WALSCRIBE_CONFIG"]
			if host, ok := s.hostPath(cfg); !ok {
				t.Errorf("%s: WALSCRIBE_CONFIG %s is not mounted", name, cfg)
			} else if _, err := os.Stat(host); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
		listen := c.Services["walscribe"].Environment["WALSCRIBE_HTTP_LISTEN"]
		_, port, _ := strings.Cut(listen, ":")
		if !strings.HasPrefix(listen, "0.0.0.0:") || !slices.Contains(c.Services["walscribe"].Ports, "127.0.0.1:"+port+":"+port) {
			t.Errorf("walscribe listens on %q and publishes %q: want 0.0.0.0:%s, published", listen, c.Services["walscribe"].Ports, port)
		}
		var pc struct {
			ScrapeConfigs []struct {
				StaticConfigs []struct {
					Targets []string `yaml:"targets"`
				} `yaml:"static_configs"`
			} `yaml:"scrape_configs"`
		}
		decodeYAML(t, "prometheus/prometheus.yaml", &pc, false)
		if len(pc.ScrapeConfigs) == 0 || len(pc.ScrapeConfigs[0].StaticConfigs) == 0 ||
			!slices.Equal(pc.ScrapeConfigs[0].StaticConfigs[0].Targets, []string{"walscribe:" + port}) {
			t.Errorf("prometheus.yaml targets %+v, want walscribe:%s", pc.ScrapeConfigs, port)
		}
	})

	t.Run("mounted files exist", func(t *testing.T) {
		for name, s := range c.Services {
			for target, source := range s.mounts() {
				if _, err := os.Stat(source); err != nil {
					t.Errorf("%s mounts %s at %s: %v", name, source, target, err)
				}
			}
		}
		for name, s := range c.Services {
			for _, v := range s.Volumes {
				src, _, _ := strings.Cut(v, ":")
				if !strings.HasPrefix(src, ".") && !strings.HasPrefix(src, "/") {
					if _, ok := c.Volumes[src]; !ok {
						t.Errorf("%s uses volume %s, not declared under volumes", name, src)
					}
				}
			}
		}
	})

	t.Run("prometheus and grafana", func(t *testing.T) {
		prom := c.Services["prometheus"]
		var configFile string
		for _, a := range prom.Command {
			if v, ok := strings.CutPrefix(a, "--config.file="); ok {
				configFile = v
			}
		}
		if host, ok := prom.hostPath(configFile); !ok || filepath.Clean(host) != filepath.Clean("prometheus/prometheus.yaml") {
			t.Errorf("prometheus --config.file=%s is %q on the host, want prometheus/prometheus.yaml", configFile, host)
		}
		if host, ok := prom.hostPath(filepath.Join(filepath.Dir(configFile), "alerts.yaml")); !ok || filepath.Clean(host) != alertsPath {
			t.Errorf("the alert rules are not mounted beside the configuration")
		}

		gr := c.Services["grafana"]
		var ds struct {
			Datasources []struct {
				Type string `yaml:"type"`
				URL  string `yaml:"url"`
			} `yaml:"datasources"`
		}
		decodeYAML(t, "grafana/provisioning/datasources/prometheus.yaml", &ds, false)
		if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].URL != "http://prometheus:9090" {
			t.Errorf("datasources %+v, want the prometheus service", ds.Datasources)
		}
		var dp struct {
			Providers []struct {
				Options struct {
					Path string `yaml:"path"`
				} `yaml:"options"`
			} `yaml:"providers"`
		}
		decodeYAML(t, "grafana/provisioning/dashboards/walscribe.yaml", &dp, false)
		if len(dp.Providers) != 1 {
			t.Fatalf("dashboard providers %+v, want one", dp.Providers)
		}
		host, ok := gr.hostPath(filepath.Join(dp.Providers[0].Options.Path, filepath.Base(dashboardPath)))
		if !ok || filepath.Clean(host) != dashboardPath {
			t.Errorf("the dashboard is not mounted in the provider's path %s", dp.Providers[0].Options.Path)
		}
		if host, ok := gr.hostPath("/etc/grafana/provisioning/datasources/prometheus.yaml"); !ok || host != "grafana/provisioning/datasources/prometheus.yaml" {
			t.Errorf("the provisioning directory is not mounted at /etc/grafana/provisioning")
		}
	})

	// The configuration the walscribe services mount loads with their
	// environment (the spool directory, a volume in compose, is a temporary
	// one here).
	t.Run("configuration loads", func(t *testing.T) {
		s := c.Services["walscribe"]
		host, _ := s.hostPath(s.Environment["WALSCRIBE_CONFIG"])
		env := copyEnv(s.Environment)
		delete(env, "WALSCRIBE_CONFIG")
		env["WALSCRIBE_SPOOL_DIR"] = t.TempDir()
		setEnv(t, env)
		cfg, err := config.Load(host)
		if err != nil {
			t.Fatalf("%s with the compose environment: %v", host, err)
		}
		if cfg.HTTP.Listen != s.Environment["WALSCRIBE_HTTP_LISTEN"] || cfg.Source.DSN != s.Environment["WALSCRIBE_SOURCE_DSN"] {
			t.Errorf("the environment did not reach the configuration: listen %q, dsn %q", cfg.HTTP.Listen, cfg.Source.DSN)
		}
		// spool.dir is a named volume of both walscribe services.
		var file struct {
			Spool struct {
				Dir string `yaml:"dir"`
			} `yaml:"spool"`
		}
		decodeYAML(t, host, &file, false)
		for _, name := range []string{"walscribe-setup", "walscribe"} {
			found := false
			for _, v := range c.Services[name].Volumes {
				src, target, _ := strings.Cut(v, ":")
				_, declared := c.Volumes[src]
				found = found || declared && strings.TrimSuffix(target, ":rw") == file.Spool.Dir
			}
			if file.Spool.Dir == "" || !found {
				t.Errorf("%s: spool.dir %q is not a volume of the service", name, file.Spool.Dir)
			}
		}
	})
}

func copyEnv(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// ---------------------------------------------------------------------------
// Kubernetes.

type kubeMeta struct {
	Name   string            `yaml:"name"`
	Labels map[string]string `yaml:"labels"`
}

type kubeEnv struct {
	Name      string `yaml:"name"`
	Value     string `yaml:"value"`
	ValueFrom *struct {
		SecretKeyRef *struct {
			Name     string `yaml:"name"`
			Key      string `yaml:"key"`
			Optional bool   `yaml:"optional"`
		} `yaml:"secretKeyRef"`
	} `yaml:"valueFrom"`
}

type kubeProbe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

type kubeContainer struct {
	Name  string    `yaml:"name"`
	Image string    `yaml:"image"`
	Args  []string  `yaml:"args"`
	Env   []kubeEnv `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	LivenessProbe  *kubeProbe `yaml:"livenessProbe"`
	ReadinessProbe *kubeProbe `yaml:"readinessProbe"`
	StartupProbe   *kubeProbe `yaml:"startupProbe"`
	VolumeMounts   []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   bool  `yaml:"readOnlyRootFilesystem"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
}

type kubeObj struct {
	APIVersion string            `yaml:"apiVersion"`
	Kind       string            `yaml:"kind"`
	Metadata   kubeMeta          `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
	Spec       struct {
		// Deployment
		Replicas *int `yaml:"replicas"`
		Strategy struct {
			Type string `yaml:"type"`
		} `yaml:"strategy"`
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata kubeMeta `yaml:"metadata"`
			Spec     struct {
				SecurityContext struct {
					RunAsNonRoot *bool `yaml:"runAsNonRoot"`
					RunAsUser    int   `yaml:"runAsUser"`
					FSGroup      int   `yaml:"fsGroup"`
				} `yaml:"securityContext"`
				InitContainers []kubeContainer `yaml:"initContainers"`
				Containers     []kubeContainer `yaml:"containers"`
				Volumes        []struct {
					Name      string `yaml:"name"`
					ConfigMap *struct {
						Name  string `yaml:"name"`
						Items []struct {
							Key  string `yaml:"key"`
							Path string `yaml:"path"`
						} `yaml:"items"`
					} `yaml:"configMap"`
					EmptyDir *struct {
						SizeLimit string `yaml:"sizeLimit"`
					} `yaml:"emptyDir"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
		// Service (selector is a plain map there: see serviceSelector)
		Ports []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort any    `yaml:"targetPort"`
		} `yaml:"ports"`
		PublishNotReadyAddresses bool `yaml:"publishNotReadyAddresses"`
		// ServiceMonitor
		Endpoints []struct {
			Port string `yaml:"port"`
			Path string `yaml:"path"`
		} `yaml:"endpoints"`
	} `yaml:"spec"`
}

// kubeObject reads the one object of kind in kubernetes/file.
func kubeObject(t *testing.T, file, kind string) kubeObj {
	t.Helper()
	var o kubeObj
	decodeYAML(t, filepath.Join("kubernetes", file), &o, false)
	if o.Kind != kind || o.APIVersion == "" || o.Metadata.Name == "" {
		t.Fatalf("kubernetes/%s: %s %s named %q, want a %s with apiVersion and name", file, o.APIVersion, o.Kind, o.Metadata.Name, kind)
	}
	return o
}

// serviceSelector reads a Service's spec.selector, a plain label map.
func serviceSelector(t *testing.T) map[string]string {
	t.Helper()
	var o struct {
		Spec struct {
			Selector map[string]string `yaml:"selector"`
		} `yaml:"spec"`
	}
	decodeYAML(t, "kubernetes/service.yaml", &o, false)
	return o.Spec.Selector
}

func envValue(c kubeContainer, name string) (kubeEnv, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e, true
		}
	}
	return kubeEnv{}, false
}

func TestKubernetes(t *testing.T) {
	dep := kubeObject(t, "deployment.yaml", "Deployment")
	cm := kubeObject(t, "configmap.yaml", "ConfigMap")
	secret := kubeObject(t, "secret.yaml", "Secret")
	svc := kubeObject(t, "service.yaml", "Service")
	sm := kubeObject(t, "servicemonitor.yaml", "ServiceMonitor")
	pod := dep.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want walscribe alone", len(pod.Containers))
	}
	ctr := pod.Containers[0]

	t.Run("deployment", func(t *testing.T) {
		if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 1 || dep.Spec.Strategy.Type != "Recreate" {
			t.Errorf("replicas %v, strategy %q: want 1 and Recreate (the slot admits one reader)", dep.Spec.Replicas, dep.Spec.Strategy.Type)
		}
		if !reflect.DeepEqual(dep.Spec.Selector.MatchLabels, dep.Spec.Template.Metadata.Labels) {
			t.Errorf("selector %v does not match the pod labels %v", dep.Spec.Selector.MatchLabels, dep.Spec.Template.Metadata.Labels)
		}
		if !slices.Equal(ctr.Args, []string{"run"}) {
			t.Errorf("args %q, want [run]", ctr.Args)
		}
		if len(pod.InitContainers) != 1 || !slices.Equal(pod.InitContainers[0].Args, []string{"setup"}) || pod.InitContainers[0].Image != ctr.Image {
			t.Errorf("init containers %+v, want walscribe setup with the same image", pod.InitContainers)
		}
	})

	t.Run("probes and ports", func(t *testing.T) {
		env, _ := envValue(ctr, "WALSCRIBE_HTTP_LISTEN")
		_, port, _ := strings.Cut(env.Value, ":")
		if !strings.HasPrefix(env.Value, "0.0.0.0:") {
			t.Errorf("WALSCRIBE_HTTP_LISTEN %q: the kubelet and Prometheus need every interface", env.Value)
		}
		ports := map[string]int{}
		for _, p := range ctr.Ports {
			ports[p.Name] = p.ContainerPort
		}
		probes := []struct {
			name  string
			probe *kubeProbe
			path  string
		}{
			{"liveness", ctr.LivenessProbe, "/healthz"},
			{"readiness", ctr.ReadinessProbe, "/readyz"},
			{"startup", ctr.StartupProbe, "/healthz"},
		}
		for _, p := range probes {
			if p.probe == nil || p.probe.HTTPGet == nil {
				t.Errorf("no %s probe", p.name)
				continue
			}
			named, _ := p.probe.HTTPGet.Port.(string)
			if p.probe.HTTPGet.Path != p.path || strconv.Itoa(ports[named]) != port {
				t.Errorf("%s probe: %s on port %v, want %s on the port walscribe listens on (%s)", p.name, p.probe.HTTPGet.Path, p.probe.HTTPGet.Port, p.path, port)
			}
		}
		if sel := serviceSelector(t); !reflect.DeepEqual(sel, dep.Spec.Template.Metadata.Labels) {
			t.Errorf("the Service selects %v, the pods are labelled %v", sel, dep.Spec.Template.Metadata.Labels)
		}
		if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort != ctr.Ports[0].Name {
			t.Errorf("Service ports %+v, want one targeting the container port %q", svc.Spec.Ports, ctr.Ports[0].Name)
		}
		if !svc.Spec.PublishNotReadyAddresses {
			t.Error("the Service should publish not-ready addresses: a walscribe that is not ready still has metrics to scrape")
		}
		if sm.APIVersion != "monitoring.coreos.com/v1" || !reflect.DeepEqual(sm.Spec.Selector.MatchLabels, svc.Metadata.Labels) {
			t.Errorf("ServiceMonitor %s selects %v, the Service is labelled %v", sm.APIVersion, sm.Spec.Selector.MatchLabels, svc.Metadata.Labels)
		}
		if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != svc.Spec.Ports[0].Name || sm.Spec.Endpoints[0].Path != "/metrics" {
			t.Errorf("ServiceMonitor endpoints %+v, want /metrics on port %s", sm.Spec.Endpoints, svc.Spec.Ports[0].Name)
		}
	})

	t.Run("security and resources", func(t *testing.T) {
		sc := pod.SecurityContext
		if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == 0 {
			t.Errorf("pod securityContext %+v: want runAsNonRoot and a non-root runAsUser", sc)
		}
		for _, c := range append(slices.Clone(pod.InitContainers), ctr) {
			s := c.SecurityContext
			if !s.ReadOnlyRootFilesystem || s.AllowPrivilegeEscalation == nil || *s.AllowPrivilegeEscalation || !slices.Equal(s.Capabilities.Drop, []string{"ALL"}) {
				t.Errorf("container %s securityContext %+v: want a read-only root, no privilege escalation, all capabilities dropped", c.Name, s)
			}
			if c.Resources.Limits["memory"] == "" || c.Resources.Requests["memory"] == "" {
				t.Errorf("container %s: memory request and limit are needed", c.Name)
			}
		}
		if ctr.Resources.Limits["memory"] != "256Mi" {
			t.Errorf("memory limit %q, want 256Mi", ctr.Resources.Limits["memory"])
		}
	})

	// The configuration file and the spool directory are where the
	// environment and the ConfigMap say they are.
	t.Run("configuration", func(t *testing.T) {
		mounts := map[string]string{}
		for _, m := range ctr.VolumeMounts {
			mounts[m.Name] = m.MountPath
		}
		env := map[string]string{}
		var names []string
		for _, e := range ctr.Env {
			names = append(names, e.Name)
			switch {
			case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
				ref := e.ValueFrom.SecretKeyRef
				v, ok := secret.StringData[ref.Key]
				if ref.Name != secret.Metadata.Name || !ok {
					t.Errorf("%s refers to key %s of Secret %s, which secret.yaml does not have", e.Name, ref.Key, ref.Name)
				}
				env[e.Name] = v
			default:
				env[e.Name] = e.Value
			}
		}
		checkEnvNames(t, "deployment.yaml", names)
		// setup reads the same configuration; it serves no HTTP.
		runEnv := slices.DeleteFunc(slices.Clone(ctr.Env), func(e kubeEnv) bool { return e.Name == "WALSCRIBE_HTTP_LISTEN" })
		for _, init := range pod.InitContainers {
			if !reflect.DeepEqual(init.Env, runEnv) || !reflect.DeepEqual(init.VolumeMounts, ctr.VolumeMounts) {
				t.Errorf("init container %s: environment or mounts differ from the walscribe container's", init.Name)
			}
		}
		var configPath, spoolMount string
		for _, v := range pod.Volumes {
			switch {
			case v.ConfigMap != nil:
				if v.ConfigMap.Name != cm.Metadata.Name || len(v.ConfigMap.Items) != 1 {
					t.Fatalf("volume %s: ConfigMap %+v, want %s with one item", v.Name, v.ConfigMap, cm.Metadata.Name)
				}
				item := v.ConfigMap.Items[0]
				if _, ok := cm.Data[item.Key]; !ok {
					t.Errorf("the ConfigMap has no key %s", item.Key)
				}
				configPath = filepath.Join(mounts[v.Name], item.Path)
			case v.EmptyDir != nil:
				spoolMount = mounts[v.Name]
			}
		}
		if env["WALSCRIBE_CONFIG"] != configPath || configPath == "" {
			t.Errorf("WALSCRIBE_CONFIG %q, the ConfigMap is mounted as %q", env["WALSCRIBE_CONFIG"], configPath)
		}

		file := filepath.Join(t.TempDir(), "walscribe.yaml")
		if err := os.WriteFile(file, []byte(cm.Data["walscribe.yaml"]), 0o644); err != nil {
			t.Fatal(err)
		}
		delete(env, "WALSCRIBE_CONFIG")
		// The placeholder secret is refused, as secret.yaml says.
		setEnv(t, env)
		if _, err := config.Load(file); err == nil || !strings.Contains(err.Error(), "masking.secret") {
			t.Errorf("the placeholder masking secret was not refused: %v", err)
		}
		var spec struct {
			Spool struct {
				Dir string `yaml:"dir"`
			} `yaml:"spool"`
		}
		if err := yaml.Unmarshal([]byte(cm.Data["walscribe.yaml"]), &spec); err != nil {
			t.Fatal(err)
		}
		if spec.Spool.Dir == "" || spec.Spool.Dir != spoolMount {
			t.Errorf("spool.dir %q, the emptyDir is mounted at %q", spec.Spool.Dir, spoolMount)
		}
		// A real key, as walscribe keygen prints it.
		env["WALSCRIBE_MASKING_SECRET"] = "ca90f96662b449e78eadd7a9262cd42378a3137164acfa0a7a9be4d88caffcb9"
		env["WALSCRIBE_SPOOL_DIR"] = t.TempDir() // the emptyDir
		setEnv(t, env)
		cfg, err := config.Load(file)
		if err != nil {
			t.Fatalf("the ConfigMap's walscribe.yaml with the Deployment's environment: %v", err)
		}
		if cfg.HTTP.Listen != env["WALSCRIBE_HTTP_LISTEN"] {
			t.Errorf("http.listen %q, want the environment's %q", cfg.HTTP.Listen, env["WALSCRIBE_HTTP_LISTEN"])
		}
	})

	// kustomize builds the manifests offline, resolving the kustomization.
	t.Run("kubectl kustomize", func(t *testing.T) {
		kubectl, err := exec.LookPath("kubectl")
		if err != nil {
			t.Skip("kubectl is not installed: kustomization.yaml was checked only by parsing")
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, kubectl, "kustomize", "kubernetes").Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				t.Fatalf("kubectl kustomize: %v\n%s", err, ee.Stderr)
			}
			t.Fatalf("kubectl kustomize: %v", err)
		}
		docs, err := yamlDocs(out)
		if err != nil {
			t.Fatal(err)
		}
		var kinds []string
		for _, d := range docs {
			m, _ := d.(map[string]any)
			kinds = append(kinds, fmt.Sprint(m["kind"]))
			if m["kind"] == "Deployment" && !strings.Contains(string(out), "image: registry.example.com/walscribe:latest") {
				t.Error("the kustomization's image did not replace the Deployment's")
			}
		}
		sort.Strings(kinds)
		if want := []string{"ConfigMap", "Deployment", "Secret", "Service"}; !slices.Equal(kinds, want) {
			t.Errorf("kustomize built %v, want %v", kinds, want)
		}
	})
}

// ---------------------------------------------------------------------------
// systemd.

// unitFile is a systemd unit: section → directives, in order.
type unitFile map[string][][2]string

func readUnit(t *testing.T, path string) unitFile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: %q is not a directive of a section", path, n, line)
			}
			u[section] = append(u[section], [2]string{k, v})
		}
	}
	return u
}

// get returns the values of a directive in a section.
func (u unitFile) get(section, key string) []string {
	var out []string
	for _, kv := range u[section] {
		if kv[0] == key {
			out = append(out, kv[1])
		}
	}
	return out
}

func TestSystemd(t *testing.T) {
	const unitPath = "systemd/walscribe.service"
	u := readUnit(t, unitPath)
	want := []struct{ section, key, value string }{
		{"Service", "ExecStart", "/usr/local/bin/walscribe run --config /etc/walscribe/walscribe.yaml"},
		{"Service", "ExecReload", "/bin/kill -HUP $MAINPID"},
		{"Service", "Restart", "on-failure"},
		{"Service", "EnvironmentFile", "-/etc/walscribe/walscribe.env"},
		{"Service", "DynamicUser", "yes"},
		{"Service", "NoNewPrivileges", "yes"},
		{"Service", "ProtectSystem", "strict"},
		{"Service", "PrivateTmp", "yes"},
		{"Service", "ProtectHome", "yes"},
		{"Service", "StateDirectory", "walscribe"},
		{"Service", "CapabilityBoundingSet", ""},
		{"Install", "WantedBy", "multi-user.target"},
	}
	for _, w := range want {
		t.Run(w.key, func(t *testing.T) {
			if got := u.get(w.section, w.key); !slices.Contains(got, w.value) {
				t.Errorf("[%s] %s = %q, want %q", w.section, w.key, got, w.value)
			}
		})
	}

	t.Run("spool directory", func(t *testing.T) {
		// The spool goes to the state directory: writable under
		// ProtectSystem=strict, and on disk.
		var spool string
		for _, e := range u.get("Service", "Environment") {
			if v, ok := strings.CutPrefix(e, "WALSCRIBE_SPOOL_DIR="); ok {
				spool = v
			}
		}
		state := u.get("Service", "StateDirectory")
		if len(state) != 1 || spool != "/var/lib/"+state[0] {
			t.Errorf("WALSCRIBE_SPOOL_DIR %q, StateDirectory %q: want the spool in the state directory", spool, state)
		}
	})

	t.Run("environment file", func(t *testing.T) {
		data, err := os.ReadFile("systemd/walscribe.env.example")
		if err != nil {
			t.Fatal(err)
		}
		env := map[string]string{}
		var names []string
		for _, line := range strings.Split(string(data), "\n") {
			line = strings.TrimSpace(line)
			commented := strings.HasPrefix(line, "#")
			line = strings.TrimPrefix(line, "#")
			k, v, ok := strings.Cut(line, "=")
			if !ok || !regexp.MustCompile(`^WALSCRIBE_[A-Z0-9_]+$`).MatchString(k) {
				continue
			}
			names = append(names, k)
			if !commented {
				env[k] = v
			}
		}
		if env["WALSCRIBE_SOURCE_DSN"] == "" || len(names) < 4 {
			t.Fatalf("variables %v: want WALSCRIBE_SOURCE_DSN and the other common ones", names)
		}
		checkEnvNames(t, "walscribe.env.example", names)
		// With the example configuration, the placeholder secret is refused
		// and a real one accepted: the file's variables reach walscribe.
		setEnv(t, env)
		if _, err := config.Load("walscribe.example.yaml"); err == nil || !strings.Contains(err.Error(), "masking.secret") {
			t.Errorf("the placeholder masking secret was not refused: %v", err)
		}
		// A real key, as openssl rand -base64 33 prints it.
		env["WALSCRIBE_MASKING_SECRET"] = "ZxXi0fkFkMLWITX+OXZ9f9o9Lz07rcmUUUpszL9Rwud/"
		setEnv(t, env)
		cfg, err := config.Load("walscribe.example.yaml")
		if err != nil {
			t.Fatalf("walscribe.example.yaml with walscribe.env.example: %v", err)
		}
		if cfg.Source.DSN != env["WALSCRIBE_SOURCE_DSN"] {
			t.Errorf("source.dsn %q, want the environment file's", cfg.Source.DSN)
		}
	})

	// systemd-analyze checks the unit offline. verify wants the binary to
	// exist: it checks a copy that runs /bin/true instead.
	t.Run("systemd-analyze", func(t *testing.T) {
		bin, err := exec.LookPath("systemd-analyze")
		if err != nil {
			t.Skip("systemd-analyze is not installed: the unit was checked only by the directives above")
		}
		data, err := os.ReadFile(unitPath)
		if err != nil {
			t.Fatal(err)
		}
		unit := filepath.Join(t.TempDir(), "walscribe.service")
		if err := os.WriteFile(unit, bytes.ReplaceAll(data, []byte("/usr/local/bin/walscribe"), []byte("/bin/true")), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bin, "verify", unit).CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
		// Exposure 0 (locked down) to 10 (unprotected); 2.0 and below is
		// what systemd calls OK.
		out, err := exec.Command(bin, "security", "--offline=yes", "--threshold=20", unit).CombinedOutput()
		if err != nil {
			t.Errorf("systemd-analyze security: exposure above 2.0: %v\n%s", err, out)
		}
		if m := regexp.MustCompile(`Overall exposure level for \S+: (\S+)`).FindSubmatch(out); m != nil {
			t.Logf("systemd-analyze security: exposure %s", m[1])
		}
	})
}

// ---------------------------------------------------------------------------
// The compose demo, without Docker.

// TestComposeDemo does what `docker compose -f deploy/compose.yaml up` does,
// minus the containers: it builds walscribe with the Dockerfile's command,
// starts PostgreSQL 15 with the postgres service's settings, runs the
// init SQL as the postgres image would, then walscribe setup and run with
// the walscribe services' environment and configuration, then the traffic
// service's SQL; and checks the trail against the tables, /readyz, /metrics
// and walscribe status.
func TestComposeDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds walscribe and runs it against a PostgreSQL server")
	}
	c := readCompose(t)
	bin := buildLikeDockerfile(t)

	srv, err := pgtest.Start(pgtest.Options{Settings: postgresSettings(t, c)})
	if err != nil {
		t.Fatalf("PostgreSQL with the compose settings %v: %v", postgresSettings(t, c), err)
	}
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// The postgres image creates POSTGRES_DB and runs the init scripts in it
	// as the superuser.
	pg := c.Services["postgres"]
	db := pg.Environment["POSTGRES_DB"]
	pgtest.Exec(t, srv.DSN("postgres"), "CREATE DATABASE "+pgx.Identifier{db}.Sanitize())
	initDir, ok := pg.hostPath("/docker-entrypoint-initdb.d")
	if !ok {
		t.Fatal("the postgres service mounts no /docker-entrypoint-initdb.d")
	}
	scripts, _ := filepath.Glob(filepath.Join(initDir, "*.sql"))
	if len(scripts) == 0 {
		t.Fatalf("no init SQL in %s", initDir)
	}
	sort.Strings(scripts)
	for _, s := range scripts {
		sql, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		pgtest.Exec(t, srv.DSN(db), string(sql))
	}

	// The walscribe services' environment, pointed at this server.
	env := func(service string) []string {
		s := c.Services[service]
		vars := copyEnv(s.Environment)
		host, ok := s.hostPath(vars["WALSCRIBE_CONFIG"])
		if !ok {
			t.Fatalf("%s: WALSCRIBE_CONFIG is not mounted", service)
		}
		vars["WALSCRIBE_CONFIG"] = host
		vars["WALSCRIBE_SOURCE_DSN"] = pointAt(t, vars["WALSCRIBE_SOURCE_DSN"], srv)
		if admin, ok := vars["WALSCRIBE_ADMIN_DSN"]; ok {
			vars["WALSCRIBE_ADMIN_DSN"] = pointAt(t, admin, srv)
		}
		vars["WALSCRIBE_SPOOL_DIR"] = t.TempDir() // a volume in compose
		if _, ok := vars["WALSCRIBE_HTTP_LISTEN"]; ok {
			port, err := pgtest.FreePort()
			if err != nil {
				t.Fatal(err)
			}
			vars["WALSCRIBE_HTTP_LISTEN"] = "127.0.0.1:" + strconv.Itoa(port)
		}
		var out []string
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "WALSCRIBE_") {
				out = append(out, kv)
			}
		}
		for k, v := range vars {
			out = append(out, k+"="+v)
		}
		return out
	}
	runEnv := env("walscribe")
	listen := ""
	for _, kv := range runEnv {
		if v, ok := strings.CutPrefix(kv, "WALSCRIBE_HTTP_LISTEN="); ok {
			listen = v
		}
	}

	setup := exec.CommandContext(ctx, bin, c.Services["walscribe-setup"].Command...)
	setup.Env = env("walscribe-setup")
	out, err := setup.CombinedOutput()
	if err != nil {
		t.Fatalf("walscribe setup with the demo's role and configuration: %v\n%s", err, out)
	}
	t.Logf("walscribe setup:\n%s", out)

	var logs bytes.Buffer
	run := exec.Command(bin, c.Services["walscribe"].Command...)
	run.Env = runEnv
	run.Stdout, run.Stderr = &logs, &logs
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	// exited is closed when the process has exited, with runErr set.
	exited := make(chan struct{})
	var runErr error
	go func() { runErr = run.Wait(); close(exited) }()
	defer func() {
		run.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("walscribe run:\n%s", logs.String())
		}
	}()

	ready := waitReady(t, ctx, "http://"+listen+"/readyz", exited, &runErr)
	t.Logf("/readyz: %s", ready)

	// The traffic service's SQL, as its role, a few times.
	tr := c.Services["traffic"]
	trafficFile, ok := tr.hostPath("/traffic.sql")
	if !ok {
		t.Fatal("the traffic service mounts no /traffic.sql")
	}
	traffic, err := os.ReadFile(trafficFile)
	if err != nil {
		t.Fatal(err)
	}
	appDSN := fmt.Sprintf("postgres://%s:%s@%s:%d/%s?sslmode=disable", tr.Environment["PGUSER"], tr.Environment["PGPASSWORD"],
		srv.Host, srv.Port, tr.Environment["PGDATABASE"])
	const rounds = 3
	for range rounds {
		pgtest.Exec(t, appDSN, string(traffic))
	}

	// The trail holds every change of the traffic: compare with the tables.
	conn := pgtest.Connect(t, srv.DSN(db))
	var orders, pageViews int
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM page_views)`).Scan(&orders, &pageViews); err != nil {
		t.Fatal(err)
	}
	if orders != rounds {
		t.Fatalf("%d orders after %d rounds of traffic", orders, rounds)
	}
	var inserted, withActor, views int
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := conn.QueryRow(ctx, `SELECT
				count(*) FILTER (WHERE e.table_name = 'orders' AND e.action = 'insert'),
				count(*) FILTER (WHERE e.table_name = 'orders' AND e.action = 'insert' AND e.actor = c.email
				                 AND e.actor_id = (e.new->>'customer_id')),
				count(*) FILTER (WHERE e.table_name = 'page_views' AND e.action = 'insert')
			FROM audit.entries e LEFT JOIN customers c ON c.id = (e.new->>'customer_id')::bigint`).Scan(&inserted, &withActor, &views)
		if err != nil {
			t.Fatal(err)
		}
		if inserted == orders && views == pageViews || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if inserted != orders || withActor != orders || views != pageViews {
		t.Errorf("the trail has %d order inserts (%d with the customer as actor) and %d page views; the tables have %d orders and %d page views",
			inserted, withActor, views, orders, pageViews)
	}

	// /metrics counts them too, under the names the dashboard uses.
	body := get(t, "http://"+listen+"/metrics")
	want := fmt.Sprintf(`walscribe_entries_written_total{action="insert",schema="public",table="orders"} %d`, orders)
	if !strings.Contains(body, want+"\n") {
		t.Errorf("/metrics has no %q", want)
	}
	for _, name := range []string{"walscribe_streaming 1", "walscribe_sink_up 1", "walscribe_commit_to_durable_seconds_bucket", `walscribe_context_entries_total{with_actor="true"}`} {
		if !strings.Contains(body, name) {
			t.Errorf("/metrics has no %s", name)
		}
	}

	// `docker compose exec walscribe walscribe status`.
	status := exec.CommandContext(ctx, bin, "status", "--json")
	status.Env = runEnv
	out, err = status.Output()
	if err != nil {
		t.Errorf("walscribe status: %v", err)
	} else {
		var st struct {
			Slot   string `json:"slot"`
			Active bool   `json:"active"`
		}
		if err := json.Unmarshal(out, &st); err != nil || st.Slot != "walscribe" || !st.Active {
			t.Errorf("walscribe status --json: %s (%v): want slot walscribe, active", out, err)
		}
	}

	// docker compose stop: SIGTERM, and a clean exit.
	run.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		if runErr != nil {
			t.Errorf("walscribe run after SIGTERM: %v", runErr)
		}
	case <-time.After(60 * time.Second):
		t.Error("walscribe run did not exit within 60s of SIGTERM (the compose stop_grace_period)")
	}
}

// buildLikeDockerfile runs the Dockerfile's go build in the repository root
// and returns the binary. The version is stamped as the Dockerfile does.
func buildLikeDockerfile(t *testing.T) string {
	t.Helper()
	b := dockerfileBuild(t, parseDockerfile(t))
	bin := filepath.Join(t.TempDir(), "walscribe")
	const version = "deploy-test"
	args := []string{"build"}
	for _, f := range sortedKeys(b.flags) {
		if b.flags[f] == "" {
			args = append(args, f)
		} else {
			args = append(args, f+"="+b.flags[f])
		}
	}
	ldflags := strings.ReplaceAll(strings.Join(b.ldflags, " "), versionHolder, version)
	args = append(args, "-ldflags", ldflags, "-o", bin, b.pkg)
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	cmd.Env = os.Environ()
	for k, v := range b.env {
		if strings.HasPrefix(v, "$") {
			continue // $TARGETOS and $TARGETARCH: empty outside buildx, the host's
		}
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the Dockerfile's build (go %s): %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("built walscribe as the Dockerfile does in %v", time.Since(start).Round(time.Millisecond))
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), version) {
		t.Fatalf("walscribe --version: %q (%v): want the version %s stamped by -ldflags", out, err, version)
	}
	// Static: no dynamic loader, so it runs on distroless/static.
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("the binary is dynamically linked: distroless/static has no loader for it")
		}
	}
	return bin
}

// pointAt rewrites a compose connection URL (host postgres) to srv.
func pointAt(t *testing.T, dsn string, srv *pgtest.Server) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("WALSCRIBE_SOURCE_DSN %q: %v", dsn, err)
	}
	if u.Hostname() != "postgres" {
		t.Fatalf("WALSCRIBE_SOURCE_DSN connects to %s, not to the postgres service", u.Host)
	}
	u.Host = net.JoinHostPort(srv.Host, strconv.Itoa(srv.Port))
	return u.String()
}

// httpClient gives up on a request that hangs.
var httpClient = &http.Client{Timeout: 10 * time.Second}

// waitReady polls /readyz until it answers 200, the process exits (exited
// is closed, and *runErr says how), or ctx ends.
func waitReady(t *testing.T, ctx context.Context, u string, exited <-chan struct{}, runErr *error) string {
	t.Helper()
	last := ""
	for {
		resp, err := httpClient.Get(u)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(b))
			if resp.StatusCode == http.StatusOK {
				return last
			}
		}
		select {
		case <-exited:
			t.Fatalf("walscribe run exited before it was ready: %v", *runErr)
		case <-ctx.Done():
			t.Fatalf("walscribe run not ready: %s", last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func get(t *testing.T, u string) string {
	t.Helper()
	resp, err := httpClient.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", u, resp.StatusCode, err)
	}
	return string(b)
}
