// GossipSub mode of the go-libp2p interop peer (go-libp2p-pubsub, spec defaults).
//
//	go-peer pubsub [--ip IP] [--seed-hex HEX]
//
// The JSON-lines contract of tests/interop/README.md ("Pubsub peers"): print
// {"event":"listening",...}, then one JSON command per stdin line (connect, subscribe,
// publish, peers); every received message is printed as {"event":"message",...}.
package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"sort"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

var emitLock sync.Mutex

func emit(event map[string]any) {
	line, _ := json.Marshal(event)
	emitLock.Lock()
	os.Stdout.Write(append(line, '\n'))
	emitLock.Unlock()
}

func runPubsub(args []string) error {
	fs := flag.NewFlagSet("pubsub", flag.ContinueOnError)
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
	priv, err := identity(*seedHex)
	if err != nil {
		return err
	}
	h, err := newHost(priv, []string{fmt.Sprintf("/%s/%s/tcp/0", family, parsed.String())})
	if err != nil {
		return err
	}
	defer h.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Defaults are the spec's: D=6, heartbeat 1 s, StrictSign, from+seqno message IDs.
	ps, err := pubsub.NewGossipSub(ctx, h)
	if err != nil {
		return err
	}
	p2p, err := ma.NewMultiaddr("/p2p/" + h.ID().String())
	if err != nil {
		return err
	}
	var addrs []string
	for _, a := range h.Network().ListenAddresses() {
		addrs = append(addrs, a.Encapsulate(p2p).String())
	}
	emit(map[string]any{"event": "listening", "peer_id": h.ID().String(), "addrs": addrs})

	topics := map[string]*pubsub.Topic{}
	join := func(name string) (*pubsub.Topic, error) {
		if t, ok := topics[name]; ok {
			return t, nil
		}
		t, err := ps.Join(name)
		if err != nil {
			return nil, err
		}
		topics[name] = t
		return t, nil
	}
	subscribed := map[string]bool{}
	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 1<<20), 16<<20)
	for scanner.Scan() {
		var cmd map[string]string
		if err := json.Unmarshal(scanner.Bytes(), &cmd); err != nil {
			emit(map[string]any{"event": "error", "cmd": scanner.Text(), "error": err.Error()})
			continue
		}
		if err := handlePubsub(ctx, h.Connect, cmd, join, subscribed, ps); err != nil {
			emit(map[string]any{"event": "error", "cmd": cmd["cmd"], "error": err.Error()})
		}
	}
	return nil
}

func handlePubsub(
	ctx context.Context,
	connect func(context.Context, peer.AddrInfo) error,
	cmd map[string]string,
	join func(string) (*pubsub.Topic, error),
	subscribed map[string]bool,
	ps *pubsub.PubSub,
) error {
	switch cmd["cmd"] {
	case "connect":
		info, err := peer.AddrInfoFromString(cmd["addr"])
		if err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if err := connect(cctx, *info); err != nil {
			return err
		}
		emit(map[string]any{"event": "connected", "peer_id": info.ID.String()})
	case "subscribe":
		name := cmd["topic"]
		if !subscribed[name] {
			t, err := join(name)
			if err != nil {
				return err
			}
			sub, err := t.Subscribe()
			if err != nil {
				return err
			}
			subscribed[name] = true
			go func() {
				for {
					msg, err := sub.Next(ctx)
					if err != nil {
						return
					}
					emit(map[string]any{
						"event": "message", "topic": name,
						"data": hex.EncodeToString(msg.Data), "from": msg.GetFrom().String(),
					})
				}
			}()
		}
		emit(map[string]any{"event": "subscribed", "topic": name})
	case "publish":
		t, err := join(cmd["topic"])
		if err != nil {
			return err
		}
		data, err := hex.DecodeString(cmd["data"])
		if err != nil {
			return err
		}
		if err := t.Publish(ctx, data); err != nil {
			return err
		}
		emit(map[string]any{"event": "published", "topic": cmd["topic"]})
	case "peers":
		var peers []string
		for _, p := range ps.ListPeers(cmd["topic"]) {
			peers = append(peers, p.String())
		}
		sort.Strings(peers)
		if peers == nil {
			peers = []string{}
		}
		emit(map[string]any{"event": "peers", "topic": cmd["topic"], "peers": peers})
	default:
		return fmt.Errorf("unknown command %q", cmd["cmd"])
	}
	return nil
}
