package kernel

import (
	"errors"
	"fmt"
	"strings"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// state is what the kernel holds of the data path, as last sent or as
// found: chains by name with their text, sets by name with their
// elements' text, counters. An empty text means "found, content unknown":
// an adopted chain or set is rewritten in full.
type state struct {
	chains   map[string]string
	sets     map[string]string
	counters map[string]bool
}

func newState() state {
	return state{chains: map[string]string{}, sets: map[string]string{}, counters: map[string]bool{}}
}

// stickyText is the text of an affinity set: its content belongs to the
// kernel, only its existence matters.
const stickyText = "sticky"

func (s *setSpec) textOf() string {
	if s.sticky {
		return stickyText
	}
	return "{" + strings.Join(s.text, ", ") + "}"
}

// listState reads the data path's objects in table; a missing table is an
// empty state.
func listState(conn *nftables.Conn, tableName string) (state, error) {
	st := newState()
	table := &nftables.Table{Name: tableName, Family: nftables.TableFamilyIPv4}
	tables, err := conn.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return st, fmt.Errorf("list nftables tables: %w", err)
	}
	found := false
	for _, t := range tables {
		found = found || t.Name == tableName
	}
	if !found {
		return st, nil
	}
	chains, err := conn.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return st, fmt.Errorf("list nftables chains: %w", err)
	}
	for _, c := range chains {
		if c.Table.Name == tableName && owned(c.Name) {
			st.chains[c.Name] = ""
		}
	}
	sets, err := conn.GetSets(table)
	if err != nil {
		return st, fmt.Errorf("list nftables sets of %s: %w", tableName, err)
	}
	for _, s := range sets {
		switch {
		case s.Anonymous || !owned(s.Name):
		case strings.HasPrefix(s.Name, "aff-"):
			st.sets[s.Name] = stickyText
		default:
			st.sets[s.Name] = ""
		}
	}
	objs, err := conn.GetNamedObjects(table)
	if err != nil {
		return st, fmt.Errorf("list nftables objects of %s: %w", tableName, err)
	}
	for _, o := range objs {
		if no, ok := o.(*nftables.NamedObj); ok && no.Type == nftables.ObjTypeCounter && owned(no.Name) {
			st.counters[no.Name] = true
		}
	}
	return st, nil
}

// send makes the kernel hold rs, given that it holds have, in one
// transaction: objects are added when missing (a no-op for what exists,
// so an adopted table is never emptied first), changed chains and sets
// are flushed and filled again, and what rs no longer has is flushed and
// then deleted, once nothing refers to it. It returns what the kernel
// holds afterwards. Unchanged chains keep their rules, and with them the
// round robin position of their services.
func send(conn *batcher, rs *ruleset, have state) (state, error) {
	want := newState()
	table := rs.table
	conn.AddTable(table)

	for _, c := range rs.counters {
		want.counters[c] = true
		if !have.counters[c] {
			conn.AddObj(&nftables.CounterObj{Table: table, Name: c})
		}
	}

	changed := map[string]bool{}
	for _, c := range rs.chains {
		text := c.text()
		want.chains[c.name] = text
		old, ok := have.chains[c.name]
		switch {
		case !ok:
			conn.AddChain(c.chain(table))
			changed[c.name] = true
		case old != text:
			conn.FlushChain(c.chain(table))
			changed[c.name] = true
		}
	}
	var staleChains []string
	for name := range have.chains {
		if _, ok := want.chains[name]; !ok {
			staleChains = append(staleChains, name)
			conn.FlushChain(&nftables.Chain{Name: name, Table: table})
		}
	}

	var fill []*setSpec
	for _, s := range rs.sets {
		text := s.textOf()
		want.sets[s.set.Name] = text
		old, ok := have.sets[s.set.Name]
		switch {
		case !ok:
			if err := conn.AddSet(s.set, nil); err != nil {
				return have, fmt.Errorf("nftables set %s: %w", s.set.Name, err)
			}
			fill = append(fill, s)
		case old != text:
			conn.FlushSet(s.set)
			fill = append(fill, s)
		}
	}

	for _, c := range rs.chains {
		if !changed[c.name] {
			continue
		}
		ch := c.chain(table)
		for _, r := range c.rules {
			conn.AddRule(&nftables.Rule{Table: table, Chain: ch, Exprs: r.exprs})
		}
	}

	// Elements after the rules: a rule that binds to a map makes the
	// kernel check every element already in it, which for the maps every
	// service port's rule uses would cost the square of their number.
	for _, s := range fill {
		// The elements of one message are one netlink attribute, whose
		// length is 16 bits: a thousand services' elements are more.
		for elems := s.elems; len(elems) > 0; {
			n := min(len(elems), elementsPerMessage)
			if err := conn.SetAddElements(s.set, elems[:n]); err != nil {
				return have, fmt.Errorf("nftables set %s: %w", s.set.Name, err)
			}
			elems = elems[n:]
		}
	}

	for name := range have.sets {
		if _, ok := want.sets[name]; !ok {
			conn.DelSet(&nftables.Set{Name: name, Table: table})
		}
	}
	for _, name := range staleChains {
		conn.DelChain(&nftables.Chain{Name: name, Table: table})
	}
	for name := range have.counters {
		if !want.counters[name] {
			conn.DeleteObject(&nftables.CounterObj{Table: table, Name: name})
		}
	}
	if err := conn.commit(); err != nil {
		return have, fmt.Errorf("program nftables table %s: %w", table.Name, err)
	}
	return want, nil
}

// elementsPerMessage keeps a message of set elements well below 64 KiB
// (an element of the largest set, svc_ips, is some 100 bytes).
const elementsPerMessage = 256

func (c *chainSpec) chain(table *nftables.Table) *nftables.Chain {
	ch := &nftables.Chain{Name: c.name, Table: table}
	if c.hook != nil {
		accept := nftables.ChainPolicyAccept
		ch.Hooknum, ch.Priority, ch.Type, ch.Policy = c.hook, c.prio, c.ctype, &accept
	}
	return ch
}

// removeAll deletes every object of the data path from the table, in one
// transaction, and leaves the rest of the table (the guard) alone.
func removeAll(conn *nftables.Conn, batch *batcher, tableName string) error {
	have, err := listState(conn, tableName)
	if err != nil {
		return err
	}
	if len(have.chains)+len(have.sets)+len(have.counters) == 0 {
		return nil
	}
	table := &nftables.Table{Name: tableName, Family: nftables.TableFamilyIPv4}
	for name := range have.chains {
		batch.FlushChain(&nftables.Chain{Name: name, Table: table})
	}
	for name := range have.sets {
		batch.DelSet(&nftables.Set{Name: name, Table: table})
	}
	for name := range have.chains {
		batch.DelChain(&nftables.Chain{Name: name, Table: table})
	}
	for name := range have.counters {
		batch.DeleteObject(&nftables.CounterObj{Table: table, Name: name})
	}
	if err := batch.commit(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove the kernel data path from nftables table %s: %w", tableName, err)
	}
	return nil
}
