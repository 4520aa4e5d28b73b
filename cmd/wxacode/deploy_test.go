package main

// Checks of the deployment files (docker-compose.yml, the Dockerfile and
// deploy/kubernetes/*.yaml) by parsing them: Docker and Kubernetes are not
// needed. Every wxacode command line in them is run through the real cobra
// command tree (without executing it), every environment variable set on a
// wxacode container must belong to the command-line contract, and secrets
// must never be written in the files.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// repoRoot is the repository's root, seen from this package's folder.
const repoRoot = "../.."

// contractEnv lists the environment variables a wxacode container may be
// given: the command-line contract of DESIGN.md and the few more the code
// reads. TestDeployEnvAllowlistIsRead keeps it honest.
var contractEnv = []string{
	// DESIGN.md, "The command-line contract".
	"REDIS_URL",
	"STORAGE_URL",
	"AWS_ENDPOINT_URL_S3",
	"AWS_ENDPOINT_URL",
	"AWS_ACCESS_KEY_ID",
	"AWS_SECRET_ACCESS_KEY",
	"AWS_REGION",
	"S3_FORCE_PATH_STYLE",
	"WECHAT_APPID",
	"WECHAT_SECRET",
	"WECHAT_SECRET_FILE",
	"WECHAT_API_BASE",
	"WXACODE_RATE",
	"LOG_FORMAT",
	"LOG_LEVEL",
	"WXACODE_WEBHOOK_SECRET",
	"WXACODE_WEBHOOK_SECRET_FILE",
	// Read by the code besides.
	"AWS_SESSION_TOKEN",
	"AWS_DEFAULT_REGION",
	"WXACODE_RATE_MARGIN",
	"WECHAT_TOKEN_URL",
	"WXACODE_METRICS_ADDR",
	"WXACODE_SERVE_ADDR",
	"WXACODE_SERVE_READ_ONLY",
	"WXACODE_DASHBOARD_TOKEN",
	"WXACODE_DASHBOARD_USER",
	"WXACODE_DASHBOARD_PASSWORD",
	"WXACODE_ALLOWED_HOSTS",
}

// envSources are the non-test Go files that read the environment.
var envSources = []string{"cmd/wxacode/*.go", "storage/*.go", "internal/dashboard/*.go"}

// TestDeployEnvAllowlistIsRead makes sure every allowed name is really read
// by the code, as a string literal, so that the list cannot rot.
func TestDeployEnvAllowlistIsRead(t *testing.T) {
	var src bytes.Buffer
	for _, pattern := range envSources {
		files, err := filepath.Glob(filepath.Join(repoRoot, pattern))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			src.Write(b)
		}
	}
	for _, name := range contractEnv {
		if !bytes.Contains(src.Bytes(), []byte(strconv.Quote(name))) {
			t.Errorf("%s is in contractEnv but no file of %v reads it", name, envSources)
		}
	}
}

// checkCommandLine checks that argv (without the program name) is a valid
// wxacode command line: a known subcommand, known flags with values of the
// right type, and the right number of positional arguments. It returns the
// subcommand's name and parsed flags for further checks.
func checkCommandLine(argv []string) (string, func(name string) (string, bool), error) {
	if len(argv) == 0 {
		return "", nil, errors.New("no command: the image's default only prints the help")
	}
	a := &app{getenv: func(string) string { return "" }, stdout: io.Discard, stderr: io.Discard}
	root := a.rootCommand()
	sub, rest, err := root.Find(argv)
	if err != nil {
		return "", nil, fmt.Errorf("wxacode %s: %w", strings.Join(argv, " "), err)
	}
	if sub == root {
		return "", nil, fmt.Errorf("wxacode %s: no known subcommand", strings.Join(argv, " "))
	}
	sub.InitDefaultHelpFlag()
	if err := sub.ParseFlags(rest); err != nil {
		return "", nil, fmt.Errorf("wxacode %s: %w", strings.Join(argv, " "), err)
	}
	if err := sub.ValidateArgs(sub.Flags().Args()); err != nil {
		return "", nil, fmt.Errorf("wxacode %s: %w", strings.Join(argv, " "), err)
	}
	if err := sub.ValidateRequiredFlags(); err != nil {
		return "", nil, fmt.Errorf("wxacode %s: %w", strings.Join(argv, " "), err)
	}
	lookup := func(name string) (string, bool) {
		f := sub.Flags().Lookup(name)
		if f == nil || !f.Changed {
			return "", false
		}
		return f.Value.String(), true
	}
	return sub.Name(), lookup, nil
}

// envNameAllowed reports whether name belongs to the contract.
func envNameAllowed(name string) bool { return slices.Contains(contractEnv, name) }

// isSecretName reports whether an environment variable holds a secret
// value (rather than the name of a file holding one, or a URL).
func isSecretName(name string) bool {
	if strings.HasSuffix(name, "_FILE") || strings.HasSuffix(name, "_URL") {
		return false
	}
	for _, w := range []string{"SECRET", "PASSWORD", "TOKEN"} {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}

// composeSecretRef matches a whole-value compose reference that has no
// literal default: ${NAME}, ${NAME:?message} (or ${NAME?message}), or
// ${NAME:-} (empty when unset).
var composeSecretRef = regexp.MustCompile(`^\$\{[A-Za-z_][A-Za-z0-9_]*(:?\?[^}]*|:?-)?\}$`)

// listen addresses that bind every interface.
func exposedAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return true
	}
	if host == "localhost" {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}

// ---- docker-compose.yml ----

// checkCompose returns the problems of a compose file.
func checkCompose(data []byte) []string {
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return []string{"parse: " + err.Error()}
	}
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	services := asMap(doc["services"])
	if len(services) == 0 {
		return []string{"no services"}
	}
	topSecrets := asMap(doc["secrets"])
	for _, name := range sortedKeys(services) {
		svc := asMap(services[name])
		if svc == nil {
			bad("service %s: not a mapping", name)
			continue
		}
		env, err := composeEnv(svc["environment"])
		if err != nil {
			bad("service %s: environment: %v", name, err)
		}
		// Secrets are never written in the file, in any service.
		for _, k := range sortedKeys(env) {
			v := env[k]
			if isSecretName(k) && v != nil && !composeSecretRef.MatchString(*v) {
				bad("service %s: %s is written in the file: use ${VAR:?message} from .env, or a secret file", name, k)
			}
		}
		// Published ports: loopback only.
		for _, p := range asList(svc["ports"]) {
			if err := checkComposePort(p); err != nil {
				bad("service %s: ports: %v", name, err)
			}
		}
		image, _ := svc["image"].(string)
		if isRedisImage(image) {
			if !hasArgPair(stringList(svc["command"]), "--appendonly", "yes") {
				bad("service %s: Redis without AOF persistence: command needs --appendonly yes", name)
			}
		}
		if !isWxacodeImage(image) && svc["build"] == nil {
			continue
		}
		// A wxacode container: its command line and its environment.
		entry := stringList(svc["entrypoint"])
		if len(entry) > 0 && entry[0] != "/wxacode" {
			bad("service %s: entrypoint %v: want /wxacode (the image's) and its arguments", name, entry)
			continue
		}
		argv := append(slices.Clone(entry[min(1, len(entry)):]), stringList(svc["command"])...)
		cmd, flag, err := checkCommandLine(argv)
		if err != nil {
			bad("service %s: %v", name, err)
			continue
		}
		for _, k := range sortedKeys(env) {
			if !envNameAllowed(k) {
				bad("service %s: environment %s is not a wxacode setting (see contractEnv)", name, k)
			}
		}
		if f := env["WECHAT_SECRET_FILE"]; f != nil {
			secret, ok := strings.CutPrefix(*f, "/run/secrets/")
			if !ok || !slices.Contains(composeSecretNames(svc["secrets"]), secret) || topSecrets[secret] == nil {
				bad("service %s: WECHAT_SECRET_FILE %s is not one of its compose secrets (/run/secrets/NAME)", name, *f)
			}
		}
		switch cmd {
		case "worker":
			if d, err := time.ParseDuration(fmt.Sprint(svc["stop_grace_period"])); err != nil || d <= 30*time.Second {
				bad("service %s: stop_grace_period %v: a worker drains within 30 s, give it more (docker stops after 10 s by default)", name, svc["stop_grace_period"])
			}
			deps := asMap(svc["depends_on"])
			redisHealthy := false
			for _, dep := range sortedKeys(deps) {
				cond := fmt.Sprint(asMap(deps[dep])["condition"])
				if cond != "service_healthy" && cond != "service_completed_successfully" {
					bad("service %s: depends_on %s: condition %s: want service_healthy or service_completed_successfully", name, dep, cond)
				}
				depImage, _ := asMap(services[dep])["image"].(string)
				if isRedisImage(depImage) && cond == "service_healthy" {
					redisHealthy = true
				}
			}
			if !redisHealthy {
				bad("service %s: a worker must depend on Redis being healthy", name)
			}
		case "serve":
			addr, _ := flag("addr")
			if addr == "" && env["WXACODE_SERVE_ADDR"] != nil {
				addr = *env["WXACODE_SERVE_ADDR"]
			}
			if exposedAddr(addr) && env["WXACODE_DASHBOARD_TOKEN"] == nil &&
				(env["WXACODE_DASHBOARD_USER"] == nil || env["WXACODE_DASHBOARD_PASSWORD"] == nil) {
				bad("service %s: serve on %q needs WXACODE_DASHBOARD_TOKEN (or _USER and _PASSWORD)", name, addr)
			}
		}
	}
	return problems
}

// composeEnv reads a compose environment, a mapping or a list of
// NAME=VALUE; a nil value is a name passed through from the host.
func composeEnv(v any) (map[string]*string, error) {
	out := map[string]*string{}
	switch e := v.(type) {
	case nil:
	case map[string]any:
		for k, val := range e {
			if val == nil {
				out[k] = nil
				continue
			}
			s := fmt.Sprint(val)
			out[k] = &s
		}
	case []any:
		for _, item := range e {
			s, ok := item.(string)
			if !ok {
				return nil, fmt.Errorf("%v is not NAME=VALUE", item)
			}
			k, val, found := strings.Cut(s, "=")
			if !found {
				out[k] = nil
				continue
			}
			out[k] = &val
		}
	default:
		return nil, fmt.Errorf("want a mapping or a list, not %T", v)
	}
	return out, nil
}

// checkComposePort accepts only ports published on a loopback address.
func checkComposePort(p any) error {
	var hostIP string
	switch v := p.(type) {
	case map[string]any:
		hostIP = fmt.Sprint(v["host_ip"])
		if v["host_ip"] == nil {
			hostIP = ""
		}
	default:
		s, _, _ := strings.Cut(fmt.Sprint(v), "/")
		if strings.HasPrefix(s, "[") {
			end := strings.Index(s, "]")
			if end < 0 {
				return fmt.Errorf("%q: unparsable", s)
			}
			hostIP = s[1:end]
		} else if parts := strings.Split(s, ":"); len(parts) == 3 {
			hostIP = parts[0]
		}
	}
	if ip := net.ParseIP(hostIP); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%v is published on every interface: bind it to 127.0.0.1", p)
	}
	return nil
}

// composeSecretNames lists a service's secrets (short or long syntax).
func composeSecretNames(v any) []string {
	var out []string
	for _, s := range asList(v) {
		if m := asMap(s); m != nil {
			out = append(out, fmt.Sprint(m["source"]))
		} else {
			out = append(out, fmt.Sprint(s))
		}
	}
	return out
}

func isRedisImage(image string) bool {
	return imageName(image) == "redis"
}

func isWxacodeImage(image string) bool {
	return imageName(image) == "wxacode"
}

// imageName is the last path segment of an image reference, without tag
// or digest: ghcr.io/x/wxacode:1.0 → wxacode.
func imageName(image string) string {
	image, _, _ = strings.Cut(strings.TrimSpace(image), "@")
	if i := strings.LastIndex(image, "/"); i >= 0 {
		image = image[i+1:]
	}
	image, _, _ = strings.Cut(image, ":")
	return image
}

// hasArgPair reports whether args hold flag followed by value (or
// flag=value).
func hasArgPair(args []string, flag, value string) bool {
	for i, a := range args {
		if a == flag+"="+value || (a == flag && i+1 < len(args) && args[i+1] == value) {
			return true
		}
	}
	return false
}

// stringList reads a command or entrypoint: a list, or a string split on
// spaces as compose does.
func stringList(v any) []string {
	switch c := v.(type) {
	case nil:
		return nil
	case string:
		return strings.Fields(c)
	case []any:
		out := make([]string, len(c))
		for i, s := range c {
			out[i] = fmt.Sprint(s)
		}
		return out
	}
	return []string{fmt.Sprint(v)}
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func TestDeployCompose(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range checkCompose(data) {
		t.Error(p)
	}
	var doc struct {
		Services map[string]struct {
			Image      string         `yaml:"image"`
			Command    any            `yaml:"command"`
			Entrypoint any            `yaml:"entrypoint"`
			Profiles   []string       `yaml:"profiles"`
			DependsOn  map[string]any `yaml:"depends_on"`
			Deploy     struct {
				Replicas int `yaml:"replicas"`
			} `yaml:"deploy"`
			Volumes []string `yaml:"volumes"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"redis", "minio", "minio-init", "worker", "dashboard", "enqueue", "simulator"} {
		if _, ok := doc.Services[name]; !ok {
			t.Errorf("service %s is missing", name)
		}
	}
	w := doc.Services["worker"]
	if w.Deploy.Replicas < 2 {
		t.Errorf("worker: deploy.replicas %d, want at least 2", w.Deploy.Replicas)
	}
	if c := fmt.Sprint(asMap(w.DependsOn["minio-init"])["condition"]); c != "service_completed_successfully" {
		t.Errorf("worker: depends_on minio-init: condition %s, want service_completed_successfully", c)
	}
	if !slices.Contains(doc.Services["enqueue"].Profiles, "tools") || !slices.Contains(doc.Services["simulator"].Profiles, "demo") {
		t.Errorf("enqueue wants profile tools and simulator profile demo")
	}
	if !slices.ContainsFunc(doc.Services["enqueue"].Volumes, func(v string) bool { return strings.Contains(v, ":/scenes") }) {
		t.Errorf("enqueue: ./scenes is not mounted on /scenes")
	}
	// The documented one-shot command: `docker compose run --rm enqueue ARGS`
	// appends ARGS to the entrypoint.
	entry := stringList(doc.Services["enqueue"].Entrypoint)
	example := append(slices.Clone(entry[min(1, len(entry)):]), "--campaign", "spring", "--page", "pages/index/index", "--scenes", "/scenes/scenes.txt")
	if cmd, _, err := checkCommandLine(example); err != nil || cmd != "enqueue" {
		t.Errorf("docker compose run --rm enqueue --campaign ...: %v (command %q)", err, cmd)
	}
	// Each ${VAR:?...} the file requires is given in deploy/.env.example.
	envExample, err := os.ReadFile(filepath.Join(repoRoot, "deploy/.env.example"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*):?\?`).FindAllSubmatch(data, -1) {
		if !regexp.MustCompile(`(?m)^` + string(m[1]) + `=`).Match(envExample) {
			t.Errorf("docker-compose.yml requires ${%s} but deploy/.env.example does not set it", m[1])
		}
	}
}

// ---- deploy/kubernetes ----

// k8sObject is what the checks read of a Kubernetes object.
type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
	Resources  []string          `yaml:"resources"`
	Spec       struct {
		Replicas *int        `yaml:"replicas"`
		Template k8sTemplate `yaml:"template"`
	} `yaml:"spec"`
}

type k8sTemplate struct {
	Spec struct {
		TerminationGracePeriodSeconds *int           `yaml:"terminationGracePeriodSeconds"`
		Containers                    []k8sContainer `yaml:"containers"`
	} `yaml:"spec"`
}

type k8sContainer struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Env     []struct {
		Name      string  `yaml:"name"`
		Value     *string `yaml:"value"`
		ValueFrom any     `yaml:"valueFrom"`
	} `yaml:"env"`
	EnvFrom []struct {
		ConfigMapRef *struct {
			Name string `yaml:"name"`
		} `yaml:"configMapRef"`
		SecretRef any `yaml:"secretRef"`
	} `yaml:"envFrom"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
	LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
}

type k8sProbe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

// parseK8s reads the objects of a multi-document YAML file.
func parseK8s(data []byte) ([]k8sObject, error) {
	var out []k8sObject
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(false)
	for {
		var o k8sObject
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if o.Kind != "" {
			out = append(out, o)
		}
	}
}

// checkKubernetes returns the problems of a set of Kubernetes objects
// (those of every file of a folder, so that ConfigMaps can be looked up).
func checkKubernetes(objs []k8sObject) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	configMaps := map[string]k8sObject{}
	for _, o := range objs {
		switch o.Kind {
		case "ConfigMap":
			configMaps[o.Metadata.Name] = o
		case "Secret":
			for _, k := range sortedKeys(o.StringData) {
				if !strings.Contains(o.StringData[k], "REPLACE_ME") {
					bad("Secret %s: %s holds a value: an example Secret holds placeholders (REPLACE_ME) only", o.Metadata.Name, k)
				}
			}
			if len(o.Data) > 0 {
				bad("Secret %s: data holds values: an example Secret holds stringData placeholders only", o.Metadata.Name)
			}
		}
	}
	for _, o := range objs {
		where := o.Kind + " " + o.Metadata.Name
		for _, c := range o.Spec.Template.Spec.Containers {
			if !isWxacodeImage(c.Image) {
				continue
			}
			where := where + " container " + c.Name
			if len(c.Command) > 0 && c.Command[0] != "/wxacode" {
				bad("%s: command %v: want /wxacode (the image's entrypoint)", where, c.Command)
				continue
			}
			argv := append(slices.Clone(c.Command[min(1, len(c.Command)):]), c.Args...)
			cmd, flag, err := checkCommandLine(argv)
			if err != nil {
				bad("%s: %v", where, err)
				continue
			}
			env := map[string]bool{}
			for _, e := range c.Env {
				env[e.Name] = true
				if !envNameAllowed(e.Name) {
					bad("%s: env %s is not a wxacode setting (see contractEnv)", where, e.Name)
				}
				if isSecretName(e.Name) && e.Value != nil {
					bad("%s: env %s is written in the file: use valueFrom.secretKeyRef or a mounted file", where, e.Name)
				}
			}
			for _, ef := range c.EnvFrom {
				if ef.SecretRef != nil {
					bad("%s: envFrom secretRef hides which variables are set: use env valueFrom.secretKeyRef", where)
				}
				if ef.ConfigMapRef == nil {
					continue
				}
				cm, ok := configMaps[ef.ConfigMapRef.Name]
				if !ok {
					bad("%s: envFrom ConfigMap %s is not in the folder", where, ef.ConfigMapRef.Name)
				}
				for _, k := range sortedKeys(cm.Data) {
					env[k] = true
					if !envNameAllowed(k) {
						bad("ConfigMap %s: %s is not a wxacode setting (see contractEnv)", cm.Metadata.Name, k)
					}
					if isSecretName(k) {
						bad("ConfigMap %s: %s is a secret: put it in a Secret", cm.Metadata.Name, k)
					}
				}
			}
			switch cmd {
			case "worker":
				addr, ok := flag("metrics-addr")
				if !ok {
					bad("%s: a worker needs --metrics-addr for its probes", where)
					break
				}
				_, port, _ := net.SplitHostPort(addr)
				if g := o.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g <= 30 {
					bad("%s: terminationGracePeriodSeconds must exceed the 30 s a worker takes to drain", where)
				}
				for name, p := range map[string]*k8sProbe{"readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe} {
					if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || containerPort(c, p.HTTPGet.Port) != port {
						bad("%s: %s: want httpGet /healthz on the metrics port %s", where, name, port)
					}
				}
			case "serve":
				addr, _ := flag("addr")
				if exposedAddr(addr) && !env["WXACODE_DASHBOARD_TOKEN"] &&
					(!env["WXACODE_DASHBOARD_USER"] || !env["WXACODE_DASHBOARD_PASSWORD"]) {
					bad("%s: serve on %q needs WXACODE_DASHBOARD_TOKEN (or _USER and _PASSWORD)", where, addr)
				}
			}
		}
	}
	return problems
}

// containerPort resolves a probe's port (a number or a port name).
func containerPort(c k8sContainer, port any) string {
	if name, ok := port.(string); ok {
		for _, p := range c.Ports {
			if p.Name == name {
				return strconv.Itoa(p.ContainerPort)
			}
		}
	}
	return fmt.Sprint(port)
}

func TestDeployKubernetes(t *testing.T) {
	dir := filepath.Join(repoRoot, "deploy/kubernetes")
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var objs []k8sObject
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		o, err := parseK8s(data)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		objs = append(objs, o...)
	}
	for _, p := range checkKubernetes(objs) {
		t.Error(p)
	}
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.Kind]++
		switch {
		case o.Kind == "Deployment" && o.Metadata.Name == "wxacode-worker":
			if o.Spec.Replicas == nil || *o.Spec.Replicas != 4 {
				t.Errorf("Deployment wxacode-worker: want replicas 4")
			}
		case o.Kind == "Kustomization":
			for _, r := range o.Resources {
				if _, err := os.Stat(filepath.Join(dir, r)); err != nil {
					t.Errorf("kustomization.yaml: resource %s: %v", r, err)
				}
			}
		}
	}
	for kind, n := range map[string]int{"Deployment": 2, "Service": 1, "ConfigMap": 1, "Secret": 1, "Job": 1, "Kustomization": 1} {
		if kinds[kind] < n {
			t.Errorf("deploy/kubernetes: %d %s, want at least %d", kinds[kind], kind, n)
		}
	}
	// The worker and the dashboard are checked as wxacode containers.
	var commands []string
	for _, o := range objs {
		for _, c := range o.Spec.Template.Spec.Containers {
			if isWxacodeImage(c.Image) && len(c.Args) > 0 {
				commands = append(commands, c.Args[0])
			}
		}
	}
	slices.Sort(commands)
	if want := []string{"enqueue", "serve", "worker"}; !slices.Equal(commands, want) {
		t.Errorf("wxacode containers run %v, want %v", commands, want)
	}
}

// ---- Dockerfile ----

func TestDeployDockerfile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var stages [][]string // the instructions of each stage, comments dropped
	for _, line := range strings.Split(strings.ReplaceAll(string(data), "\\\n", " "), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(strings.ToUpper(line), "FROM ") {
			stages = append(stages, nil)
		}
		if len(stages) > 0 {
			stages[len(stages)-1] = append(stages[len(stages)-1], line)
		}
	}
	if len(stages) < 2 {
		t.Fatalf("Dockerfile: %d stages, want a build stage and a small final one", len(stages))
	}
	build, final := strings.Join(stages[0], "\n"), stages[len(stages)-1]
	for _, want := range []string{"CGO_ENABLED=0", "-o /wxacode ./cmd/wxacode"} {
		if !strings.Contains(build, want) {
			t.Errorf("Dockerfile build stage: no %q", want)
		}
	}
	has := func(prefix string) string {
		for _, l := range final {
			if strings.HasPrefix(l, prefix) {
				return l
			}
		}
		return ""
	}
	if l := has("ENTRYPOINT"); l != `ENTRYPOINT ["/wxacode"]` {
		t.Errorf("Dockerfile: final stage %q, want ENTRYPOINT [\"/wxacode\"]: the compose and Kubernetes files give only the arguments", l)
	}
	if l := has("USER"); l == "" || strings.Contains(l, "root") || strings.Fields(l)[1] == "0" || strings.HasPrefix(strings.Fields(l)[1], "0:") {
		t.Errorf("Dockerfile: final stage %q, want a non-root USER", l)
	}
	if l := has("EXPOSE"); !strings.Contains(l, "8080") {
		t.Errorf("Dockerfile: final stage %q, want EXPOSE 8080", l)
	}
}

// ---- the checkers catch mistakes ----

// goodCompose is a small valid compose file that each case below breaks.
const goodCompose = `
services:
  redis:
    image: redis:7
    command: ["redis-server", "--appendonly", "yes"]
    healthcheck: {test: ["CMD", "redis-cli", "ping"]}
  worker:
    image: wxacode:latest
    command: ["worker", "--metrics-addr", ":9100"]
    stop_grace_period: 40s
    environment:
      REDIS_URL: redis://redis:6379/0
      AWS_SECRET_ACCESS_KEY: ${MINIO_ROOT_PASSWORD:?set it}
      WECHAT_SECRET_FILE: /run/secrets/wechat_secret
    secrets: [wechat_secret]
    depends_on:
      redis: {condition: service_healthy}
  dashboard:
    build: .
    command: serve --addr 0.0.0.0:8080
    environment:
      - REDIS_URL=redis://redis:6379/0
      - WXACODE_DASHBOARD_TOKEN=${WXACODE_DASHBOARD_TOKEN:?set it}
    ports: ["127.0.0.1:8080:8080"]
  enqueue:
    image: wxacode
    entrypoint: ["/wxacode", "enqueue"]
    command: ["--campaign", "spring", "--page", "pages/index/index", "--scenes", "/scenes/scenes.txt"]
secrets:
  wechat_secret: {file: ./deploy/secrets/wechat_secret}
`

func TestDeployComposeCheckerCatchesMistakes(t *testing.T) {
	if p := checkCompose([]byte(goodCompose)); len(p) > 0 {
		t.Fatalf("the good compose file has problems: %q", p)
	}
	cases := []struct {
		name, old, new, want string
	}{
		{"unknown command", `["worker", "--metrics-addr"`, `["wrker", "--metrics-addr"`, `unknown command "wrker"`},
		{"only global flags", `["worker", "--metrics-addr", ":9100"]`, `["--log-level", "debug"]`, "no known subcommand"},
		{"unknown flag", `"--metrics-addr", ":9100"`, `"--metrics-address", ":9100"`, "unknown flag"},
		{"bad flag value", `"--metrics-addr", ":9100"]`, `"--concurrency", "many"]`, "invalid argument"},
		{"positional argument", `"--metrics-addr", ":9100"]`, `"--metrics-addr", ":9100", "extra"]`, "unknown command"},
		{"unknown flag in a string command", `serve --addr 0.0.0.0:8080`, `serve --adr 0.0.0.0:8080`, "unknown flag"},
		{"unknown flag after the entrypoint", `"--scenes", "/scenes/scenes.txt"]`, `"--scene", "/scenes/scenes.txt"]`, "unknown flag"},
		{"entrypoint", `["/wxacode", "enqueue"]`, `["/bin/sh", "-c"]`, "want /wxacode"},
		{"env name", `REDIS_URL: redis://redis:6379/0`, `REDIS_ADDR: redis:6379`, "REDIS_ADDR is not a wxacode setting"},
		{"env name in a list", `- REDIS_URL=redis`, `- WXACODE_REDIS=redis`, "WXACODE_REDIS is not a wxacode setting"},
		{"literal secret", `AWS_SECRET_ACCESS_KEY: ${MINIO_ROOT_PASSWORD:?set it}`, `AWS_SECRET_ACCESS_KEY: minio123`, "AWS_SECRET_ACCESS_KEY is written in the file"},
		{"secret with a literal default", `AWS_SECRET_ACCESS_KEY: ${MINIO_ROOT_PASSWORD:?set it}`, `AWS_SECRET_ACCESS_KEY: ${MINIO_ROOT_PASSWORD:-minio123}`, "AWS_SECRET_ACCESS_KEY is written in the file"},
		{"literal app secret", `WECHAT_SECRET_FILE: /run/secrets/wechat_secret`, `WECHAT_SECRET: 0123456789abcdef`, "WECHAT_SECRET is written in the file"},
		{"literal token in a list", `WXACODE_DASHBOARD_TOKEN=${WXACODE_DASHBOARD_TOKEN:?set it}`, `WXACODE_DASHBOARD_TOKEN=hunter2`, "WXACODE_DASHBOARD_TOKEN is written in the file"},
		{"secret file not mounted", `secrets: [wechat_secret]`, `secrets: []`, "WECHAT_SECRET_FILE"},
		{"dashboard without a token", `- WXACODE_DASHBOARD_TOKEN=${WXACODE_DASHBOARD_TOKEN:?set it}`, ``, "needs WXACODE_DASHBOARD_TOKEN"},
		{"port on every interface", `"127.0.0.1:8080:8080"`, `"8080:8080"`, "published on every interface"},
		{"port on a public address", `"127.0.0.1:8080:8080"`, `"0.0.0.0:8080:8080"`, "published on every interface"},
		{"redis without AOF", `"--appendonly", "yes"`, `"--appendonly", "no"`, "--appendonly yes"},
		{"worker stopped too soon", `stop_grace_period: 40s`, `stop_grace_period: 10s`, "stop_grace_period"},
		{"worker before redis is healthy", `{condition: service_healthy}`, `{condition: service_started}`, "condition service_started"},
		{"no command", `command: ["worker", "--metrics-addr", ":9100"]`, ``, "no command"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(goodCompose, tc.old) {
				t.Fatalf("the good compose file has no %q", tc.old)
			}
			mutated := strings.Replace(goodCompose, tc.old, tc.new, 1)
			problems := checkCompose([]byte(mutated))
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tc.want) }) {
				t.Errorf("problems %q, want one with %q", problems, tc.want)
			}
		})
	}
}

// goodK8s is a small valid set of Kubernetes objects that each case below
// breaks.
const goodK8s = `
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data:
  REDIS_URL: redis://redis:6379/0
---
apiVersion: v1
kind: Secret
metadata: {name: sec}
stringData:
  wechat-secret: REPLACE_ME
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: w}
spec:
  replicas: 4
  template:
    spec:
      terminationGracePeriodSeconds: 40
      containers:
        - name: worker
          image: registry.example.com/wxacode:1.0
          args: ["worker", "--metrics-addr", ":9100"]
          envFrom:
            - configMapRef: {name: cfg}
          env:
            - name: AWS_SECRET_ACCESS_KEY
              valueFrom: {secretKeyRef: {name: sec, key: aws}}
          ports: [{name: metrics, containerPort: 9100}]
          readinessProbe: {httpGet: {path: /healthz, port: metrics}}
          livenessProbe: {httpGet: {path: /healthz, port: 9100}}
`

func TestDeployKubernetesCheckerCatchesMistakes(t *testing.T) {
	objs, err := parseK8s([]byte(goodK8s))
	if err != nil || len(objs) != 3 {
		t.Fatalf("parse: %d objects, %v", len(objs), err)
	}
	if p := checkKubernetes(objs); len(p) > 0 {
		t.Fatalf("the good objects have problems: %q", p)
	}
	cases := []struct {
		name, old, new, want string
	}{
		{"unknown flag", `"--metrics-addr", ":9100"`, `"--metrics", ":9100"`, "unknown flag"},
		{"command overrides the entrypoint", `args: ["worker"`, `command: ["/bin/sh"]` + "\n          args: [\"worker\"", "want /wxacode"},
		{"worker without a metrics address", `"worker", "--metrics-addr", ":9100"`, `"worker"`, "needs --metrics-addr"},
		{"entrypoint and arguments", `args: ["worker", "--metrics-addr", ":9100"]`, `command: ["/wxacode", "worker"]` + "\n          args: [\"--metrics-adr\", \":9100\"]", "unknown flag"},
		{"ConfigMap key", `REDIS_URL: redis`, `REDIS_HOST: redis`, "REDIS_HOST is not a wxacode setting"},
		{"secret in the ConfigMap", `REDIS_URL: redis://redis:6379/0`, `WECHAT_SECRET: abc`, "is a secret"},
		{"literal secret", `valueFrom: {secretKeyRef: {name: sec, key: aws}}`, `value: minio123`, "AWS_SECRET_ACCESS_KEY is written in the file"},
		{"real value in the example Secret", `wechat-secret: REPLACE_ME`, `wechat-secret: 0123456789abcdef`, "placeholders"},
		{"short grace period", `terminationGracePeriodSeconds: 40`, `terminationGracePeriodSeconds: 30`, "terminationGracePeriodSeconds"},
		{"probe on the wrong port", `port: 9100}`, `port: 8080}`, "livenessProbe"},
		{"probe on the wrong path", `{path: /healthz, port: metrics}`, `{path: /, port: metrics}`, "readinessProbe"},
		{"missing ConfigMap", `configMapRef: {name: cfg}`, `configMapRef: {name: other}`, "ConfigMap other is not in the folder"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(goodK8s, tc.old) {
				t.Fatalf("the good objects have no %q", tc.old)
			}
			objs, err := parseK8s([]byte(strings.Replace(goodK8s, tc.old, tc.new, 1)))
			if err != nil {
				t.Fatal(err)
			}
			problems := checkKubernetes(objs)
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tc.want) }) {
				t.Errorf("problems %q, want one with %q", problems, tc.want)
			}
		})
	}
}
