package kube

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"cuelang.org/go/cue/ast"
	"cuelang.org/go/cue/format"
	"cuelang.org/go/cue/token"

	"github.com/cuelet/cuelet/manifests"
)

// CUE returns the unit as a CUE file with its package clause. What equals
// the schema's default is left out, so the file says only what matters.
func (u ImportedUnit) CUE() ([]byte, error) {
	var top fields
	if len(u.Pods) > 0 {
		var pods fields
		for _, p := range u.Pods {
			pods.add(p.Name, podCUE(p))
		}
		top.add("pods", pods)
	}
	if len(u.Services) > 0 {
		var svcs fields
		for _, s := range u.Services {
			svcs.add(s.Name, serviceCUE(s))
		}
		top.add("services", svcs)
	}
	f := &ast.File{Decls: []ast.Decl{&ast.Package{Name: ast.NewIdent(u.Package)}}}
	for _, fl := range top {
		f.Decls = append(f.Decls, fl.field())
	}
	b, err := format.Node(f, format.Simplify())
	if err != nil {
		return nil, fmt.Errorf("format unit %s: %w", u.Package, err)
	}
	if !bytes.HasSuffix(b, []byte("\n")) {
		b = append(b, '\n')
	}
	return b, nil
}

// fields is a struct whose fields keep the order they were added in.
type fields []kv

type kv struct {
	key string
	val any // string, int, float64, bool, []string, []any, fields, map[string]string
}

func (f *fields) add(k string, v any) { *f = append(*f, kv{k, v}) }

// addIf adds the value unless it is the zero value or the default.
func addIf[T comparable](f *fields, k string, v, def T) {
	var zero T
	if v != zero && v != def {
		f.add(k, v)
	}
}

func (e kv) field() *ast.Field {
	return &ast.Field{Label: ast.NewStringLabel(e.key), Value: expr(e.val)}
}

func expr(v any) ast.Expr {
	switch v := v.(type) {
	case string:
		return ast.NewString(v)
	case int:
		return ast.NewLit(token.INT, strconv.Itoa(v))
	case float64:
		s := strconv.FormatFloat(v, 'g', -1, 64)
		return ast.NewLit(token.FLOAT, s)
	case bool:
		return ast.NewBool(v)
	case []string:
		l := &ast.ListLit{}
		for _, s := range v {
			l.Elts = append(l.Elts, ast.NewString(s))
		}
		return l
	case []any:
		l := &ast.ListLit{}
		for _, e := range v {
			l.Elts = append(l.Elts, expr(e))
		}
		return l
	case map[string]string:
		var f fields
		for _, k := range slices.Sorted(maps.Keys(v)) {
			f.add(k, v[k])
		}
		return expr(f)
	case fields:
		s := &ast.StructLit{}
		if len(v) == 1 {
			// A struct of one field is written a: b: c, as people do.
			if _, ok := v[0].val.(fields); ok || isScalar(v[0].val) {
				s.Elts = []ast.Decl{v[0].field()}
				return s
			}
		}
		s.Lbrace, s.Rbrace = token.Blank.Pos(), token.Newline.Pos()
		for _, e := range v {
			s.Elts = append(s.Elts, e.field())
		}
		return s
	case manifests.PortRef:
		if v.Name != "" {
			return ast.NewString(v.Name)
		}
		return expr(v.Number)
	}
	panic(fmt.Sprintf("kube: no CUE for %T", v))
}

func isScalar(v any) bool {
	switch v.(type) {
	case string, int, float64, bool, manifests.PortRef:
		return true
	}
	return false
}

func podCUE(p manifests.Pod) fields {
	var f fields
	if p.Replicas != 1 {
		f.add("replicas", p.Replicas)
	}
	if len(p.Labels) > 0 {
		f.add("labels", p.Labels)
	}
	if len(p.NodeSelector) > 0 {
		f.add("nodeSelector", p.NodeSelector)
	}
	addIf(&f, "restartPolicy", p.RestartPolicy, "Always")
	addIf(&f, "shareProcessNamespace", p.ShareProcessNamespace, false)
	// 0 is a grace period of its own, not "unset": written whenever it is
	// not the default.
	if p.TerminationGracePeriodSeconds != defaultGracePeriod {
		f.add("terminationGracePeriodSeconds", p.TerminationGracePeriodSeconds)
	}
	addIf(&f, "progressDeadlineSeconds", p.ProgressDeadlineSeconds, defaultProgressDeadline)
	if c := p.DNSConfig; c != nil {
		var df fields
		if c.Nameservers != nil {
			df.add("nameservers", c.Nameservers)
		}
		if c.Searches != nil {
			df.add("searches", c.Searches)
		}
		if c.Options != nil {
			var opts []any
			for _, o := range c.Options {
				of := fields{{"name", o.Name}}
				if o.Value != nil {
					of.add("value", *o.Value)
				}
				opts = append(opts, of)
			}
			df.add("options", opts)
		}
		f.add("dnsConfig", df)
	}
	var cs fields
	for _, c := range p.Containers {
		cs.add(c.Name, containerCUE(c))
	}
	f.add("containers", cs)
	if len(p.Volumes) > 0 {
		var vs fields
		for _, v := range p.Volumes {
			var src fields
			switch {
			case v.EmptyDir != nil:
				src.add("emptyDir", fields{})
			case v.Persistent != nil:
				var pf fields
				addIf(&pf, "size", v.Persistent.Size, "")
				src.add("persistent", pf)
			case v.HostPath != nil:
				src.add("hostPath", fields{{"path", v.HostPath.Path}})
			case v.Files != nil:
				src.add("files", v.Files)
			}
			vs.add(v.Name, src)
		}
		f.add("volumes", vs)
	}
	return f
}

func containerCUE(c manifests.Container) fields {
	var f fields
	f.add("image", c.Image)
	addIf(&f, "imagePullPolicy", c.ImagePullPolicy, "IfNotPresent")
	if c.Command != nil {
		f.add("command", c.Command)
	}
	if c.Args != nil {
		f.add("args", c.Args)
	}
	addIf(&f, "workingDir", c.WorkingDir, "")
	if len(c.Env) > 0 {
		f.add("env", c.Env)
	}
	if len(c.Ports) > 0 {
		var ps []any
		for _, p := range c.Ports {
			var pf fields
			addIf(&pf, "name", p.Name, "")
			pf.add("containerPort", p.ContainerPort)
			addIf(&pf, "protocol", p.Protocol, "TCP")
			ps = append(ps, pf)
		}
		f.add("ports", ps)
	}
	if len(c.VolumeMounts) > 0 {
		var ms []any
		for _, m := range c.VolumeMounts {
			mf := fields{{"name", m.Name}, {"mountPath", m.MountPath}}
			addIf(&mf, "readOnly", m.ReadOnly, false)
			ms = append(ms, mf)
		}
		f.add("volumeMounts", ms)
	}
	var rf fields
	addIf(&rf, "memory", c.Resources.Memory, "")
	addIf(&rf, "cpus", c.Resources.CPUs, 0)
	if len(rf) > 0 {
		f.add("resources", rf)
	}
	if p := c.ReadinessProbe; p != nil {
		var pf fields
		switch {
		case p.Exec != nil:
			pf.add("exec", fields{{"command", p.Exec.Command}})
		case p.TCPSocket != nil:
			pf.add("tcpSocket", fields{{"port", p.TCPSocket.Port}})
		case p.HTTPGet != nil:
			hf := fields{}
			addIf(&hf, "path", p.HTTPGet.Path, "/")
			hf.add("port", p.HTTPGet.Port)
			pf.add("httpGet", hf)
		}
		addIf(&pf, "initialDelaySeconds", p.InitialDelaySeconds, 0)
		addIf(&pf, "periodSeconds", p.PeriodSeconds, 10)
		addIf(&pf, "timeoutSeconds", p.TimeoutSeconds, 1)
		addIf(&pf, "successThreshold", p.SuccessThreshold, 1)
		addIf(&pf, "failureThreshold", p.FailureThreshold, 3)
		f.add("readinessProbe", pf)
	}
	return f
}

func serviceCUE(s manifests.Service) fields {
	var f fields
	if len(s.Selector) > 0 {
		f.add("selector", s.Selector)
	}
	if s.Endpoints != nil {
		f.add("endpoints", s.Endpoints)
	}
	addIf(&f, "portalIP", s.PortalIP, "")
	addIf(&f, "sessionAffinity", s.SessionAffinity, "None")
	addIf(&f, "sessionAffinityTimeoutSeconds", s.SessionAffinityTimeoutSeconds, defaultAffinityTimeout)
	var ps []any
	for _, p := range s.Ports {
		var pf fields
		addIf(&pf, "name", p.Name, "")
		pf.add("port", p.Port)
		if p.TargetPort != (manifests.PortRef{}) && p.TargetPort != (manifests.PortRef{Number: p.Port}) {
			pf.add("targetPort", p.TargetPort)
		}
		addIf(&pf, "protocol", p.Protocol, "TCP")
		addIf(&pf, "externalPort", p.ExternalPort, 0)
		ps = append(ps, pf)
	}
	f.add("ports", ps)
	return f
}
