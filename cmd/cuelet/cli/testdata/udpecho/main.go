// Command udpecho is a UDP echo server and client for the services
// end-to-end tests: the busybox test image has no UDP tool. The tests build
// it statically and mount it into pods.
//
//	udpecho serve :5353          answers every datagram with "$HOSTNAME: <datagram>"
//	udpecho send 10.0.0.1:53 hi  sends "hi", prints the answer (exit 1 after 2 s without one)
package main

import (
	"fmt"
	"net"
	"os"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "udpecho:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: udpecho serve ADDR | udpecho send ADDR MESSAGE")
	}
	switch args[0] {
	case "serve":
		return serve(args[1])
	case "send":
		msg := "ping"
		if len(args) > 2 {
			msg = args[2]
		}
		return send(args[1], msg)
	}
	return fmt.Errorf("unknown mode %q", args[0])
}

func serve(addr string) error {
	c, err := net.ListenPacket("udp4", addr)
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	buf := make([]byte, 64<<10)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return err
		}
		c.WriteTo(append([]byte(host+": "), buf[:n]...), from)
	}
}

func send(addr, msg string) error {
	c, err := net.Dial("udp4", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 64<<10)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	fmt.Println(string(buf[:n]))
	return nil
}
