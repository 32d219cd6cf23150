// Command flooder sends DNS datagrams to an agent as fast as it can, from a process of its
// own so that the test measuring the agent keeps its CPU (tests/harness.Flood).
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dnsagent/dnsagent/tests/harness"
)

func main() {
	src := flag.String("src", "127.0.0.1", "source address")
	addr := flag.String("addr", "", "the agent's address")
	sockets := flag.Int("sockets", 1, "sending sockets (one goroutine each)")
	d := flag.Duration("for", 10*time.Second, "how long")
	kind := flag.String("kind", "notify", "notify (NOTIFYs of -zone) or create (CREATEs of distinct zones no primary serves)")
	zone := flag.String("zone", "example.com.", "the zone NOTIFYs name")
	flag.Parse()
	message := notifies(*zone)
	if *kind == "create" {
		message = creates
	}
	sent, err := flood(*src, *addr, *sockets, *d, message)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(sent)
}

func flood(src, addr string, sockets int, d time.Duration, message func(i uint64) []byte) (uint64, error) {
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var sent, next atomic.Uint64
	var wg sync.WaitGroup
	for range sockets {
		conn, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(src)}, raddr)
		if err != nil {
			return 0, fmt.Errorf("flood socket: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			for ctx.Err() == nil {
				for range 256 {
					if _, err := conn.Write(message(next.Add(1))); err == nil {
						sent.Add(1)
					}
				}
			}
		}()
	}
	wg.Wait()
	return sent.Load(), nil
}

func notifies(zone string) func(i uint64) []byte {
	msg := harness.NotifyMsg(0, zone, false)
	return func(i uint64) []byte {
		m := append([]byte(nil), msg...)
		binary.BigEndian.PutUint16(m, uint16(i))
		return m
	}
}

func creates(i uint64) []byte {
	return harness.CreateMsg(uint16(i), fmt.Sprintf("f%x.flood.test.", i))
}
