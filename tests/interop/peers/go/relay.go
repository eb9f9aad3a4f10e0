// Circuit relay v2 modes of the go-libp2p interop peer (see tests/interop/README.md).
//
//	go-peer relay [--ip IP] [--unlimited 1]    a relay (hop) that prints its address line
//	go-peer relay-reserve --relay MA           reserves on a relay, serves /echo/1.0.0 and
//	                                           prints {"peer_id", "addrs": [circuit addr]}
//	go-peer relay-dial --addr CIRCUIT_MA [--echo-bytes N]
//	                                           dials through a relay, echoes N bytes, prints JSON
//
// relay and relay-reserve keep running until stdin reaches EOF or a signal arrives.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
)

func init() {
	extraModes["relay"] = relayMode
	extraModes["relay-reserve"] = relayReserveMode
	extraModes["relay-dial"] = func(args []string) error {
		report, err := relayDialMode(args)
		if err != nil {
			report = map[string]any{"ok": false, "error": err.Error()}
		}
		printLine(report)
		return err
	}
}

// relayHost is newHost with the relay client transport enabled (stop protocol, dialing
// /p2p-circuit addresses).
func relayHost(priv crypto.PrivKey, listen []string) (host.Host, error) {
	opts := []libp2p.Option{
		libp2p.Identity(priv),
		libp2p.UserAgent(agent),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.EnableRelay(),
		libp2p.Ping(true),
	}
	if len(listen) == 0 {
		opts = append(opts, libp2p.NoListenAddrs)
	} else {
		opts = append(opts, libp2p.ListenAddrStrings(listen...))
	}
	return libp2p.New(opts...)
}

func printLine(v map[string]any) {
	line, _ := json.Marshal(v)
	os.Stdout.Write(append(line, '\n'))
}

func waitForStop() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	done := make(chan struct{}, 1)
	go func() {
		io.Copy(io.Discard, os.Stdin)
		done <- struct{}{}
	}()
	select {
	case <-done:
	case <-sigs:
	}
}

func relayMode(args []string) error {
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	ip := fs.String("ip", "127.0.0.1", "IPv4 address to listen on")
	seedHex := fs.String("seed-hex", "", "32-byte Ed25519 seed in hex")
	unlimited := fs.String("unlimited", "0", "1: no per-circuit limits (for benchmarks)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	priv, err := identity(*seedHex)
	if err != nil {
		return err
	}
	h, err := relayHost(priv, []string{fmt.Sprintf("/ip4/%s/tcp/0", *ip)})
	if err != nil {
		return err
	}
	defer h.Close()
	// Loopback addresses are not public; list them anyway so clients can use them.
	opts := []relayv2.Option{relayv2.WithReservationAddressFilter(func(ma.Multiaddr) bool { return true })}
	if *unlimited == "1" {
		opts = append(opts, relayv2.WithInfiniteLimits())
	}
	r, err := relayv2.New(h, opts...)
	if err != nil {
		return err
	}
	defer r.Close()
	h.SetStreamHandler(echoProto, serveEcho)
	p2p, _ := ma.NewMultiaddr("/p2p/" + h.ID().String())
	var addrs []string
	for _, a := range h.Network().ListenAddresses() {
		if _, err := a.ValueForProtocol(ma.P_CIRCUIT); err == nil {
			continue // the relay client transport's own /p2p-circuit listener
		}
		addrs = append(addrs, a.Encapsulate(p2p).String())
	}
	printLine(map[string]any{"peer_id": h.ID().String(), "addrs": addrs})
	waitForStop()
	return nil
}

func relayReserveMode(args []string) error {
	fs := flag.NewFlagSet("relay-reserve", flag.ContinueOnError)
	relayAddr := fs.String("relay", "", "relay multiaddr ending in /p2p/ID")
	seedHex := fs.String("seed-hex", "", "32-byte Ed25519 seed in hex")
	if err := fs.Parse(args); err != nil {
		return err
	}
	info, err := peer.AddrInfoFromString(*relayAddr)
	if err != nil {
		return fmt.Errorf("--relay: %w", err)
	}
	priv, err := identity(*seedHex)
	if err != nil {
		return err
	}
	h, err := relayHost(priv, nil)
	if err != nil {
		return err
	}
	defer h.Close()
	h.SetStreamHandler(echoProto, serveEcho)
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	if err := h.Connect(ctx, *info); err != nil {
		return fmt.Errorf("connect to relay: %w", err)
	}
	rsvp, err := client.Reserve(ctx, h, *info)
	if err != nil {
		return fmt.Errorf("reserve: %w", err)
	}
	circuit, _ := ma.NewMultiaddr(fmt.Sprintf("/p2p/%s/p2p-circuit/p2p/%s", info.ID, h.ID()))
	var addrs []string
	for _, a := range info.Addrs {
		addrs = append(addrs, a.Encapsulate(circuit).String())
	}
	var relayAddrs []string
	for _, a := range rsvp.Addrs {
		relayAddrs = append(relayAddrs, a.String())
	}
	printLine(map[string]any{
		"peer_id":          h.ID().String(),
		"addrs":            addrs,
		"expiration":       rsvp.Expiration.Unix(),
		"relay_addrs":      relayAddrs,
		"voucher_verified": rsvp.Voucher != nil,
		"limit_duration_s": rsvp.LimitDuration.Seconds(),
		"limit_data_bytes": rsvp.LimitData,
	})
	waitForStop()
	return nil
}

func relayDialMode(args []string) (map[string]any, error) {
	fs := flag.NewFlagSet("relay-dial", flag.ContinueOnError)
	addr := fs.String("addr", "", "circuit multiaddr …/p2p/RELAY/p2p-circuit/p2p/TARGET")
	echoBytes := fs.Int("echo-bytes", 1024, "bytes to echo through the circuit")
	seedHex := fs.String("seed-hex", "", "32-byte Ed25519 seed in hex")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	info, err := peer.AddrInfoFromString(*addr)
	if err != nil {
		return nil, fmt.Errorf("--addr: %w", err)
	}
	priv, err := identity(*seedHex)
	if err != nil {
		return nil, err
	}
	h, err := relayHost(priv, nil)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	start := time.Now()
	if err := h.Connect(ctx, *info); err != nil {
		return nil, fmt.Errorf("connect through the relay: %w", err)
	}
	connectMs := float64(time.Since(start).Microseconds()) / 1000
	conns := h.Network().ConnsToPeer(info.ID)
	if len(conns) == 0 {
		return nil, errors.New("no connection after Connect")
	}
	limited := conns[0].Stat().Limited
	data := pseudoRandom(*echoBytes, 7)
	if err := echoRound(network.WithAllowLimitedConn(ctx, "interop"), h, info.ID, data); err != nil {
		return nil, fmt.Errorf("echo through the relay: %w", err)
	}
	return map[string]any{
		"ok":             true,
		"remote_peer_id": info.ID.String(),
		"connect_ms":     connectMs,
		"remote_addr":    conns[0].RemoteMultiaddr().String(),
		"limited":        limited,
		"echo_ok":        true,
		"echo_bytes":     *echoBytes,
	}, nil
}
