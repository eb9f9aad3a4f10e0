// go-libp2p interop peer for NeoNet's harness (see tests/interop/README.md).
//
//	go-peer listen --transport tcp|ws [--ip IP] [--seed-hex HEX]
//	go-peer pubsub [--ip IP] [--seed-hex HEX]   (pubsub.go)
//	go-peer dial --addr MA [--echo-bytes N] [--pings N] [--perf-upload N --perf-download M] [--streams N]
package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"github.com/libp2p/go-libp2p/p2p/transport/websocket"
	ma "github.com/multiformats/go-multiaddr"
)

const (
	echoProto   = "/echo/1.0.0"
	perfProto   = "/perf/1.0.0"
	agent       = "neonet-interop/go-libp2p/0.51.0"
	stepTimeout = 60 * time.Second
	chunk       = 64 * 1024
)

// Modes added by other files of this package (relay.go), keyed by name.
var extraModes = map[string]func([]string) error{}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: go-peer listen|dial [options]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "listen":
		if err := listen(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "listen failed:", err)
			os.Exit(1)
		}
	case "dial":
		report, err := dial(os.Args[2:])
		if err != nil {
			report = map[string]any{"ok": false, "error": err.Error()}
		}
		line, _ := json.Marshal(report)
		os.Stdout.Write(append(line, '\n'))
		if err != nil {
			os.Exit(1)
		}
	case "pubsub":
		if err := runPubsub(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "pubsub failed:", err)
			os.Exit(1)
		}
	default:
		if mode, ok := extraModes[os.Args[1]]; ok {
			if err := mode(os.Args[2:]); err != nil {
				fmt.Fprintln(os.Stderr, os.Args[1], "failed:", err)
				os.Exit(1)
			}
			return
		}
		fmt.Fprintf(os.Stderr, "unknown mode %q\n", os.Args[1])
		os.Exit(2)
	}
}

func identity(seedHex string) (crypto.PrivKey, error) {
	if seedHex == "" {
		priv, _, err := crypto.GenerateEd25519Key(nil)
		return priv, err
	}
	seed, err := hex.DecodeString(seedHex)
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, errors.New("--seed-hex must be 64 hex digits")
	}
	return crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(seed))
}

func newHost(priv crypto.PrivKey, listen []string) (host.Host, error) {
	opts := []libp2p.Option{
		libp2p.Identity(priv),
		libp2p.UserAgent(agent),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(websocket.New),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.DisableRelay(),
		libp2p.Ping(true),
	}
	if len(listen) == 0 {
		opts = append(opts, libp2p.NoListenAddrs)
	} else {
		opts = append(opts, libp2p.ListenAddrStrings(listen...))
	}
	return libp2p.New(opts...)
}

// ------------------------------------------------------------------ servers

func serveEcho(s network.Stream) {
	defer s.Close()
	if _, err := io.Copy(s, s); err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		s.Reset()
		return
	}
	s.CloseWrite()
}

func servePerf(s network.Stream) {
	defer s.Close()
	var hdr [8]byte
	if _, err := io.ReadFull(s, hdr[:]); err != nil {
		fmt.Fprintln(os.Stderr, "perf header:", err)
		s.Reset()
		return
	}
	if _, err := io.Copy(io.Discard, s); err != nil {
		fmt.Fprintln(os.Stderr, "perf upload:", err)
		s.Reset()
		return
	}
	if err := writeZeros(s, binary.BigEndian.Uint64(hdr[:])); err != nil {
		fmt.Fprintln(os.Stderr, "perf download:", err)
		s.Reset()
		return
	}
	s.CloseWrite()
}

func writeZeros(w io.Writer, n uint64) error {
	buf := make([]byte, chunk)
	for n > 0 {
		k := uint64(len(buf))
		if n < k {
			k = n
		}
		if _, err := w.Write(buf[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// ------------------------------------------------------------------ listen

func listen(args []string) error {
	fs := flag.NewFlagSet("listen", flag.ContinueOnError)
	transport := fs.String("transport", "tcp", "tcp or ws")
	ip := fs.String("ip", "127.0.0.1", "IP to listen on")
	seedHex := fs.String("seed-hex", "", "32-byte Ed25519 seed in hex")
	if err := fs.Parse(args); err != nil {
		return err
	}
	parsed := net.ParseIP(*ip)
	if parsed == nil {
		return fmt.Errorf("--ip: bad address %q", *ip)
	}
	family := "ip6"
	if parsed.To4() != nil {
		family = "ip4"
	}
	addr := fmt.Sprintf("/%s/%s/tcp/0", family, parsed.String())
	switch *transport {
	case "tcp":
	case "ws":
		addr += "/ws"
	default:
		return fmt.Errorf("unsupported transport %q", *transport)
	}
	priv, err := identity(*seedHex)
	if err != nil {
		return err
	}
	h, err := newHost(priv, []string{addr})
	if err != nil {
		return err
	}
	defer h.Close()
	h.SetStreamHandler(echoProto, serveEcho)
	h.SetStreamHandler(perfProto, servePerf)

	p2p, err := ma.NewMultiaddr("/p2p/" + h.ID().String())
	if err != nil {
		return err
	}
	var addrs []string
	for _, a := range h.Network().ListenAddresses() {
		addrs = append(addrs, a.Encapsulate(p2p).String())
	}
	if len(addrs) == 0 {
		return errors.New("no listen address")
	}
	// Catch SIGTERM/SIGINT before announcing the address, so a signal sent as
	// soon as the line is read still means a clean exit (status 0).
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	line, _ := json.Marshal(map[string]any{"peer_id": h.ID().String(), "addrs": addrs})
	os.Stdout.Write(append(line, '\n'))

	done := make(chan struct{}, 2)
	go func() {
		io.Copy(io.Discard, os.Stdin)
		done <- struct{}{}
	}()
	select {
	case <-done:
	case <-sigs:
	}
	return nil
}

// ------------------------------------------------------------------ dial

func pseudoRandom(n int, state uint64) []byte {
	out := make([]byte, 0, n+8)
	var word [8]byte
	for len(out) < n {
		state ^= state >> 12
		state ^= state << 25
		state ^= state >> 27
		binary.LittleEndian.PutUint64(word[:], state*0x2545F4914F6CDD1D)
		out = append(out, word[:]...)
	}
	return out[:n]
}

func echoRound(ctx context.Context, h host.Host, p peer.ID, data []byte) error {
	s, err := h.NewStream(ctx, p, echoProto)
	if err != nil {
		return fmt.Errorf("open echo stream: %w", err)
	}
	defer s.Close()
	s.SetDeadline(time.Now().Add(stepTimeout))
	var werr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for off := 0; off < len(data); off += chunk {
			end := min(off+chunk, len(data))
			if _, werr = s.Write(data[off:end]); werr != nil {
				return
			}
		}
		werr = s.CloseWrite()
	}()
	got, rerr := io.ReadAll(s)
	wg.Wait()
	if werr != nil {
		s.Reset()
		return fmt.Errorf("echo write: %w", werr)
	}
	if rerr != nil {
		s.Reset()
		return fmt.Errorf("echo read: %w", rerr)
	}
	if !bytes.Equal(got, data) {
		return fmt.Errorf("echo mismatch: sent %d bytes, got %d back", len(data), len(got))
	}
	return nil
}

func perfClient(ctx context.Context, h host.Host, p peer.ID, up, down uint64) (map[string]any, error) {
	s, err := h.NewStream(ctx, p, perfProto)
	if err != nil {
		return nil, fmt.Errorf("open perf stream: %w", err)
	}
	defer s.Close()
	s.SetDeadline(time.Now().Add(300 * time.Second))
	t0 := time.Now()
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], down)
	if _, err := s.Write(hdr[:]); err != nil {
		return nil, fmt.Errorf("perf write: %w", err)
	}
	if err := writeZeros(s, up); err != nil {
		return nil, fmt.Errorf("perf upload: %w", err)
	}
	if err := s.CloseWrite(); err != nil {
		return nil, fmt.Errorf("perf close write: %w", err)
	}
	upSecs := time.Since(t0).Seconds()
	t1 := time.Now()
	got, err := io.Copy(io.Discard, s)
	if err != nil {
		return nil, fmt.Errorf("perf download: %w", err)
	}
	downSecs := time.Since(t1).Seconds()
	if uint64(got) != down {
		return nil, fmt.Errorf("perf: asked for %d bytes, got %d", down, got)
	}
	mbps := func(b uint64, secs float64) float64 { return float64(b) * 8 / max(secs, 1e-9) / 1e6 }
	return map[string]any{
		"upload_bytes":   up,
		"download_bytes": got,
		"upload_mbps":    mbps(up, upSecs),
		"download_mbps":  mbps(uint64(got), downSecs),
	}, nil
}

func dial(args []string) (map[string]any, error) {
	fs := flag.NewFlagSet("dial", flag.ContinueOnError)
	addrStr := fs.String("addr", "", "multiaddr ending in /p2p/<peer id>")
	pings := fs.Int("pings", 3, "number of pings")
	echoBytes := fs.Int64("echo-bytes", -1, "bytes to echo")
	perfUp := fs.Int64("perf-upload", -1, "perf upload bytes")
	perfDown := fs.Int64("perf-download", -1, "perf download bytes")
	streams := fs.Int("streams", -1, "sequential 1-byte echo streams")
	seedHex := fs.String("seed-hex", "", "32-byte Ed25519 seed in hex")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if *addrStr == "" {
		return nil, errors.New("dial needs --addr")
	}
	info, err := peer.AddrInfoFromString(*addrStr)
	if err != nil {
		return nil, fmt.Errorf("--addr: %w", err)
	}
	priv, err := identity(*seedHex)
	if err != nil {
		return nil, err
	}
	h, err := newHost(priv, nil)
	if err != nil {
		return nil, err
	}
	defer h.Close()

	sub, err := h.EventBus().Subscribe([]any{
		new(event.EvtPeerIdentificationCompleted), new(event.EvtPeerIdentificationFailed),
	})
	if err != nil {
		return nil, err
	}
	defer sub.Close()

	connectedAt := make(chan time.Time, 1)
	h.Network().Notify(&network.NotifyBundle{
		ConnectedF: func(_ network.Network, c network.Conn) {
			if c.RemotePeer() == info.ID {
				select {
				case connectedAt <- time.Now():
				default:
				}
			}
		},
	})

	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	report := map[string]any{}
	start := time.Now()
	if err := h.Connect(ctx, *info); err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	select {
	case t := <-connectedAt:
		report["connect_ms"] = float64(t.Sub(start).Microseconds()) / 1000
	default:
		report["connect_ms"] = float64(time.Since(start).Microseconds()) / 1000
	}
	report["remote_peer_id"] = info.ID.String()

	// Identify: go-libp2p runs it on every new connection; wait for the outcome.
	var ident *event.EvtPeerIdentificationCompleted
	for ident == nil {
		select {
		case ev := <-sub.Out():
			switch e := ev.(type) {
			case event.EvtPeerIdentificationCompleted:
				if e.Peer == info.ID {
					ident = &e
				}
			case event.EvtPeerIdentificationFailed:
				if e.Peer == info.ID {
					return nil, fmt.Errorf("identify failed: %v", e.Reason)
				}
			}
		case <-ctx.Done():
			return nil, errors.New("identify: timed out")
		}
	}
	protocols := []string{}
	for _, p := range ident.Protocols {
		protocols = append(protocols, string(p))
	}
	listenAddrs := []string{}
	for _, a := range ident.ListenAddrs {
		listenAddrs = append(listenAddrs, a.String())
	}
	observed := ""
	if ident.ObservedAddr != nil {
		observed = ident.ObservedAddr.String()
	}
	report["identify"] = map[string]any{
		"protocols":        protocols,
		"agent_version":    ident.AgentVersion,
		"protocol_version": ident.ProtocolVersion,
		"listen_addrs":     listenAddrs,
		"observed_addr":    observed,
	}

	rtts := []float64{}
	if *pings > 0 {
		pctx, pcancel := context.WithTimeout(context.Background(), stepTimeout)
		results := ping.Ping(pctx, h, info.ID)
		for len(rtts) < *pings {
			r, ok := <-results
			if !ok {
				pcancel()
				return nil, errors.New("ping: timed out")
			}
			if r.Error != nil {
				pcancel()
				return nil, fmt.Errorf("ping: %w", r.Error)
			}
			rtts = append(rtts, float64(r.RTT.Microseconds())/1000)
		}
		pcancel()
	}
	report["ping_rtt_ms"] = rtts

	if *echoBytes >= 0 {
		data := pseudoRandom(int(*echoBytes), 0x9E3779B97F4A7C15^uint64(*echoBytes))
		ectx, ecancel := context.WithTimeout(context.Background(), stepTimeout)
		err := echoRound(ectx, h, info.ID, data)
		ecancel()
		if err != nil {
			return nil, err
		}
		report["echo_ok"] = true
		report["echo_bytes"] = *echoBytes
	}

	if *perfUp >= 0 || *perfDown >= 0 {
		pctx, pcancel := context.WithTimeout(context.Background(), 300*time.Second)
		perf, err := perfClient(pctx, h, info.ID, uint64(max(*perfUp, 0)), uint64(max(*perfDown, 0)))
		pcancel()
		if err != nil {
			return nil, err
		}
		report["perf"] = perf
	}

	if *streams >= 0 {
		t0 := time.Now()
		for i := 0; i < *streams; i++ {
			sctx, scancel := context.WithTimeout(context.Background(), stepTimeout)
			err := echoRound(sctx, h, info.ID, []byte{byte(i)})
			scancel()
			if err != nil {
				return nil, fmt.Errorf("stream %d: %w", i, err)
			}
		}
		report["streams_per_second"] = float64(*streams) / max(time.Since(t0).Seconds(), 1e-9)
	}
	report["ok"] = true
	return report, nil
}
