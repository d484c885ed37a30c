package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/google/nftables"
	mdnetlink "github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// batcher sends nftables transactions built with a google/nftables Conn,
// but without its acknowledgement of every message: the library asks the
// kernel to acknowledge each message and reads the answers one recvmsg
// at a time, which for a thousand service ports (some ten thousand
// messages) costs more than the kernel's whole work. The batcher lets the
// library serialize the batch (its Conn dials a recorder instead of the
// kernel), asks for an acknowledgement of the last message only, and sends
// the batch itself. The kernel handles a batch within sendmsg, all or
// nothing, and answers with the first error or that one acknowledgement.
type batcher struct {
	// Conn records: objects are added to it as to any Conn, and commit
	// sends them.
	*nftables.Conn
	sock     *mdnetlink.Conn
	recorded []mdnetlink.Message
}

// socketBuffer is the send and receive buffer of the batcher's socket: a
// transaction is one sendmsg, which must fit the send buffer. As root the
// buffer is forced past wmem_max, as nft does; it costs memory only while
// in use. Room for the transaction of some 20,000 service ports.
const socketBuffer = 64 << 20

func newBatcher(ns netns.NsHandle) (*batcher, error) {
	b := &batcher{}
	ack := []mdnetlink.Message{{Header: mdnetlink.Header{Type: mdnetlink.Error}, Data: make([]byte, 4)}}
	rec, err := nftables.New(nftables.WithTestDial(func(req []mdnetlink.Message) ([]mdnetlink.Message, error) {
		b.recorded = append(b.recorded, req...)
		return ack, nil // what the library waits for, message by message
	}))
	if err != nil {
		return nil, fmt.Errorf("open nftables: %w", err)
	}
	b.Conn = rec
	cfg := &mdnetlink.Config{}
	if ns > 0 {
		cfg.NetNS = int(ns)
	}
	b.sock, err = mdnetlink.Dial(unix.NETLINK_NETFILTER, cfg)
	if err != nil {
		return nil, fmt.Errorf("open nftables socket: %w", err)
	}
	if err := errors.Join(b.sock.SetWriteBuffer(socketBuffer), b.sock.SetReadBuffer(1<<20),
		b.sock.SetOption(mdnetlink.CapAcknowledge, true)); err != nil {
		b.sock.Close()
		return nil, fmt.Errorf("nftables socket options: %w", err)
	}
	return b, nil
}

func (b *batcher) Close() error { return b.sock.Close() }

// commit sends what was added since the last commit as one transaction.
func (b *batcher) commit() error {
	b.recorded = b.recorded[:0]
	if err := b.Conn.Flush(); err != nil {
		return err // a serialization error; nothing was sent
	}
	msgs := b.recorded
	if len(msgs) < 3 { // batch begin and end only
		return nil
	}
	last := len(msgs) - 2 // the message before the batch end
	seq := uint32(time.Now().UnixNano())
	for i := range msgs {
		msgs[i].Header.Sequence = seq + uint32(i)
		msgs[i].Header.Flags &^= mdnetlink.Acknowledge
	}
	msgs[last].Header.Flags |= mdnetlink.Acknowledge
	if _, err := b.sock.SendMessages(msgs); err != nil {
		return fmt.Errorf("send nftables batch: %w", err)
	}
	// The answer is queued by the time sendmsg returns; the deadline only
	// guards against a kernel that answers nothing.
	if err := b.sock.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return err
	}
	for {
		replies, err := b.sock.Receive()
		if err != nil {
			return fmt.Errorf("nftables batch: %w", err)
		}
		for _, r := range replies {
			if r.Header.Type != mdnetlink.Error || len(r.Data) < 4 {
				continue
			}
			if errno := int32(binary.NativeEndian.Uint32(r.Data)); errno != 0 {
				return fmt.Errorf("nftables batch: %w", syscall.Errno(-errno))
			}
			if r.Header.Sequence == msgs[last].Header.Sequence {
				return nil
			}
		}
	}
}
