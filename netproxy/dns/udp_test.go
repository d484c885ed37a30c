package dns

import (
	"net"
	"reflect"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/rs/zerolog"
)

// The read loop's answer without miekg must be the one ServeDNS gives, and
// must be given for the common query, or the fast path is dead code.
func TestAnswerPlainIsWhatServeDNSAnswers(t *testing.T) {
	s, err := New(Config{Domain: "cluster.local", Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	s.Update([]Service{web, {Name: "Db", Addr: web.Addr.Next()}})
	for _, tc := range []struct {
		name  string
		qtype uint16
		edit  func(*mdns.Msg)
		fast  bool
	}{
		{name: "web.svc.cluster.local.", qtype: mdns.TypeA, fast: true},
		{name: "WeB.sVc.Cluster.LOCAL.", qtype: mdns.TypeA, fast: true},
		{name: "db.svc.cluster.local.", qtype: mdns.TypeA, fast: true},
		{name: "web.", qtype: mdns.TypeA, fast: true},
		{name: "web.svc.cluster.local.", qtype: mdns.TypeA, edit: func(m *mdns.Msg) { m.RecursionDesired = false }, fast: true},
		{name: "web.svc.cluster.local.", qtype: mdns.TypeA, edit: func(m *mdns.Msg) { m.CheckingDisabled, m.AuthenticatedData = true, true }, fast: true},
		{name: "web.svc.cluster.local.", qtype: mdns.TypeA, edit: func(m *mdns.Msg) { m.SetEdns0(1232, false) }},
		{name: "web.svc.cluster.local.", qtype: mdns.TypeAAAA, fast: true},
		{name: "Web.", qtype: mdns.TypeAAAA, fast: true},
		{name: "web.svc.cluster.local.", qtype: mdns.TypeAAAA, edit: func(m *mdns.Msg) { m.RecursionDesired, m.CheckingDisabled = false, true }, fast: true},
		{name: "web.svc.cluster.local.", qtype: mdns.TypeAAAA, edit: func(m *mdns.Msg) { m.SetEdns0(1232, false) }},
		{name: "nope.svc.cluster.local.", qtype: mdns.TypeAAAA},
		{name: "web.svc.cluster.local.", qtype: mdns.TypeTXT},
		{name: "web.svc.cluster.local.", qtype: mdns.TypeANY},
		{name: "web.svc.cluster.local.", qtype: mdns.TypeSRV},
		{name: "_http._tcp.web.svc.cluster.local.", qtype: mdns.TypeA},
		{name: "nope.svc.cluster.local.", qtype: mdns.TypeA},
		{name: "svc.cluster.local.", qtype: mdns.TypeA},
		{name: "web.svc.cluster.local.", qtype: mdns.TypeA, edit: func(m *mdns.Msg) { m.Question[0].Qclass = mdns.ClassCHAOS }},
		{name: "web.svc.cluster.local.", qtype: mdns.TypeA, edit: func(m *mdns.Msg) { m.Opcode = mdns.OpcodeStatus }},
		{name: "web.svc.cluster.local.", qtype: mdns.TypeA, edit: func(m *mdns.Msg) { m.Response = true }},
		{name: `web\.svc.cluster.local.`, qtype: mdns.TypeA},
	} {
		t.Run(tc.name+"/"+mdns.TypeToString[tc.qtype], func(t *testing.T) {
			q := new(mdns.Msg)
			q.SetQuestion(tc.name, tc.qtype)
			if tc.edit != nil {
				tc.edit(q)
			}
			wire, err := q.Pack()
			if err != nil {
				t.Fatal(err)
			}
			fast, _, _, ok := s.zone.Load().answerPlain(wire, nil)
			if ok != tc.fast {
				t.Fatalf("answered in the read loop: %v, want %v", ok, tc.fast)
			}
			if !ok {
				return
			}
			var got, want mdns.Msg
			if err := got.Unpack(fast); err != nil {
				t.Fatalf("unpack the read loop's answer: %v", err)
			}
			w := &packWriter{keep: true}
			s.ServeDNS(w, q)
			if err := want.Unpack(w.wire); err != nil {
				t.Fatalf("unpack ServeDNS's answer: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("read loop answers\n%v\nServeDNS answers\n%v", &got, &want)
			}
		})
	}
}

// What the read loop leaves is answered as miekg's server would: NOTIMP
// for an opcode it does not take, FORMERR for a question it cannot read.
func TestUDPPacketsMiekgRejectsAreRejectedTheSameWay(t *testing.T) {
	s := serve(t)
	update := new(mdns.Msg)
	update.SetUpdate("svc.cluster.local.")
	garbled, err := (&mdns.Msg{MsgHdr: mdns.MsgHdr{Id: 7}, Question: []mdns.Question{{Name: "web.svc.cluster.local.", Qtype: mdns.TypeA, Qclass: mdns.ClassINET}}}).Pack()
	if err != nil {
		t.Fatal(err)
	}
	garbled = garbled[:len(garbled)-3] // the question cut short
	updateWire, err := update.Pack()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		what  string
		wire  []byte
		rcode int
	}{
		{"an update", updateWire, mdns.RcodeNotImplemented},
		{"a question cut short", garbled, mdns.RcodeFormatError},
	} {
		conn, err := net.Dial("udp", s.udp)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.Write(tc.wire); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 512)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("%s: no answer: %v", tc.what, err)
		}
		var r mdns.Msg
		if err := r.Unpack(buf[:n]); err != nil {
			t.Fatalf("%s: unpack the answer: %v", tc.what, err)
		}
		if !r.Response || r.Rcode != tc.rcode {
			t.Errorf("%s: answered %s, want %s", tc.what, mdns.RcodeToString[r.Rcode], mdns.RcodeToString[tc.rcode])
		}
	}
}

// A query forwarded to an upstream that never answers must not hold the
// server's stop: SIGTERM stops the agent within 10 s (SPEC §3), and an
// exchange may last ForwardTimeout per upstream.
func TestStopDoesNotWaitForAForwardedQueryWithoutAnswer(t *testing.T) {
	silent, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	s := serveWith(t, time.Minute, silent.LocalAddr().String())

	m := new(mdns.Msg)
	m.SetQuestion("example.test.", mdns.TypeA)
	q, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	client, err := net.Dial("udp4", s.udp)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, err := client.Write(q); err != nil {
		t.Fatal(err)
	}
	// The forward is in flight once the silent upstream has it.
	silent.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := silent.ReadFrom(make([]byte, 512)); err != nil {
		t.Fatalf("the upstream never got the forwarded query: %v", err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- s.stop() }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve still waits 10 s after its stop for a forward of a minute")
	}
}
