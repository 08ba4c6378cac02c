// Command harness drives a containerd 1.6 daemon for unpacksim's real tier.
//
// It is built by unpacksim.real.harness from Debian's golang-go and
// golang-github-containerd-containerd-dev (GO111MODULE=off, GOPATH at /usr/share/gocode),
// so it links the containerd client, and with it the client unpacker (unpacker.go), of the
// installed containerd.
//
// Usage:
//
//	harness -address SOCKET -namespace NS -timeout 60s OP < request.json > response.json
//
// OP is one of version, pull, dump, gc, delete-image, create-lease, delete-lease.  The request
// is one JSON object (fields by OP below); the response is one JSON object on stdout.  An
// operation containerd refused is a response with "error" and "class" set and exit status 0;
// a harness that could not run (bad request, no daemon) exits non-zero with a message on
// stderr.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/content"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/images"
	"github.com/containerd/containerd/leases"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/remotes"
	"github.com/containerd/containerd/remotes/docker"
	"github.com/containerd/containerd/snapshots"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// pullSpec is one client.Pull and its options (pull.go, client_opts.go).
type pullSpec struct {
	Ref                    string            `json:"ref"`
	Snapshotter            string            `json:"snapshotter"`
	Unpack                 bool              `json:"unpack"`
	MaxConcurrentDownloads int               `json:"max_concurrent_downloads"`
	Discard                bool              `json:"discard"`
	Platform               string            `json:"platform"`
	Labels                 map[string]string `json:"labels"`
	Lease                  string            `json:"lease"`
}

type request struct {
	Pulls        []pullSpec        `json:"pulls"`
	Snapshotters []string          `json:"snapshotters"`
	Name         string            `json:"name"`
	Sync         bool              `json:"sync"`
	Labels       map[string]string `json:"labels"`
	Expire       string            `json:"expire"`
}

type outcome struct {
	OK    bool   `json:"ok"`
	Class string `json:"class,omitempty"`
	Error string `json:"error,omitempty"`
}

type imageJSON struct {
	Name      string             `json:"name"`
	Target    ocispec.Descriptor `json:"target"`
	Labels    map[string]string  `json:"labels"`
	CreatedAt string             `json:"created_at,omitempty"`
	UpdatedAt string             `json:"updated_at,omitempty"`
}

type pullResult struct {
	outcome
	Ref   string     `json:"ref"`
	Image *imageJSON `json:"image,omitempty"`
}

type contentJSON struct {
	Digest    string            `json:"digest"`
	Size      int64             `json:"size"`
	Labels    map[string]string `json:"labels"`
	CreatedAt string            `json:"created_at"`
	UpdatedAt string            `json:"updated_at"`
}

type ingestJSON struct {
	Ref       string `json:"ref"`
	Offset    int64  `json:"offset"`
	Total     int64  `json:"total"`
	Expected  string `json:"expected"`
	StartedAt string `json:"started_at"`
	UpdatedAt string `json:"updated_at"`
}

type snapshotJSON struct {
	Name      string            `json:"name"`
	Parent    string            `json:"parent"`
	Kind      string            `json:"kind"`
	Labels    map[string]string `json:"labels"`
	CreatedAt string            `json:"created_at"`
	UpdatedAt string            `json:"updated_at"`
}

type resourceJSON struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

type leaseJSON struct {
	ID        string            `json:"id"`
	CreatedAt string            `json:"created_at"`
	Labels    map[string]string `json:"labels"`
	Resources []resourceJSON    `json:"resources"`
}

type dumpJSON struct {
	Namespace string                    `json:"namespace"`
	Now       string                    `json:"now"`
	Content   []contentJSON             `json:"content"`
	Ingests   []ingestJSON              `json:"ingests"`
	Snapshots map[string][]snapshotJSON `json:"snapshots"`
	Leases    []leaseJSON               `json:"leases"`
	Images    []imageJSON               `json:"images"`
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// classOf names the errdefs class of err the way unpacksim.model.errdefs spells it.
func classOf(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errdefs.IsNotFound(err):
		return "NotFound"
	case errdefs.IsAlreadyExists(err):
		return "AlreadyExists"
	case errdefs.IsInvalidArgument(err):
		return "InvalidArgument"
	case errdefs.IsFailedPrecondition(err):
		return "FailedPrecondition"
	case errdefs.IsUnavailable(err):
		return "Unavailable"
	case errdefs.IsNotImplemented(err):
		return "NotImplementedYet"
	case errdefs.IsCanceled(err):
		return "Canceled"
	case errdefs.IsDeadlineExceeded(err):
		return "DeadlineExceeded"
	case errors.Is(err, errdefs.ErrUnknown):
		return "Unknown"
	}
	return "other"
}

func outcomeOf(err error) outcome {
	if err == nil {
		return outcome{OK: true}
	}
	return outcome{OK: false, Class: classOf(err), Error: err.Error()}
}

func toImageJSON(img images.Image) *imageJSON {
	return &imageJSON{
		Name:      img.Name,
		Target:    img.Target,
		Labels:    img.Labels,
		CreatedAt: stamp(img.CreatedAt),
		UpdatedAt: stamp(img.UpdatedAt),
	}
}

// resolver talks plain HTTP to loopback registries only (remotes/docker/registry.go).
func resolver() remotes.Resolver {
	return docker.NewResolver(docker.ResolverOptions{
		Hosts: docker.ConfigureDefaultRegistries(
			docker.WithPlainHTTP(docker.MatchLocalhost),
			docker.WithClient(&http.Client{Transport: &http.Transport{Proxy: nil}}),
		),
	})
}

func pullOpts(p pullSpec) []containerd.RemoteOpt {
	opts := []containerd.RemoteOpt{containerd.WithResolver(resolver())}
	if p.Unpack {
		opts = append(opts, containerd.WithPullUnpack)
	}
	if p.Snapshotter != "" {
		opts = append(opts, containerd.WithPullSnapshotter(p.Snapshotter))
	}
	if p.MaxConcurrentDownloads > 0 {
		opts = append(opts, containerd.WithMaxConcurrentDownloads(p.MaxConcurrentDownloads))
	}
	if p.Discard {
		// CRI's discard_unpacked_layers (containerd/cri#1543): layer labels never written.
		opts = append(opts, containerd.WithChildLabelMap(images.ChildGCLabelsFilterLayers))
	}
	if p.Platform != "" {
		opts = append(opts, containerd.WithPlatform(p.Platform))
	}
	if len(p.Labels) > 0 {
		opts = append(opts, containerd.WithPullLabels(p.Labels))
	}
	return opts
}

func doPull(ctx context.Context, client *containerd.Client, p pullSpec) pullResult {
	if p.Lease != "" {
		ctx = leases.WithLease(ctx, p.Lease)
	}
	img, err := client.Pull(ctx, p.Ref, pullOpts(p)...)
	res := pullResult{outcome: outcomeOf(err), Ref: p.Ref}
	if err == nil {
		res.Image = toImageJSON(img.Metadata())
	}
	return res
}

// opPull runs every pull of the request at once: each starts after all are ready.
func opPull(ctx context.Context, client *containerd.Client, req request) (interface{}, error) {
	results := make([]pullResult, len(req.Pulls))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, p := range req.Pulls {
		wg.Add(1)
		go func(i int, p pullSpec) {
			defer wg.Done()
			<-start
			results[i] = doPull(ctx, client, p)
		}(i, p)
	}
	close(start)
	wg.Wait()
	return map[string]interface{}{"pulls": results}, nil
}

func dumpContent(ctx context.Context, cs content.Store, d *dumpJSON) error {
	err := cs.Walk(ctx, func(info content.Info) error {
		d.Content = append(d.Content, contentJSON{
			Digest: info.Digest.String(), Size: info.Size, Labels: info.Labels,
			CreatedAt: stamp(info.CreatedAt), UpdatedAt: stamp(info.UpdatedAt),
		})
		return nil
	})
	if err != nil {
		return fmt.Errorf("walk content: %w", err)
	}
	sort.Slice(d.Content, func(i, j int) bool { return d.Content[i].Digest < d.Content[j].Digest })
	statuses, err := cs.ListStatuses(ctx)
	if err != nil {
		return fmt.Errorf("list ingests: %w", err)
	}
	for _, st := range statuses {
		d.Ingests = append(d.Ingests, ingestJSON{
			Ref: st.Ref, Offset: st.Offset, Total: st.Total, Expected: st.Expected.String(),
			StartedAt: stamp(st.StartedAt), UpdatedAt: stamp(st.UpdatedAt),
		})
	}
	sort.Slice(d.Ingests, func(i, j int) bool { return d.Ingests[i].Ref < d.Ingests[j].Ref })
	return nil
}

func dumpSnapshots(ctx context.Context, sn snapshots.Snapshotter) ([]snapshotJSON, error) {
	out := []snapshotJSON{}
	err := sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		out = append(out, snapshotJSON{
			Name: info.Name, Parent: info.Parent, Kind: strings.ToLower(info.Kind.String()),
			Labels: info.Labels, CreatedAt: stamp(info.Created), UpdatedAt: stamp(info.Updated),
		})
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

func dumpLeases(ctx context.Context, ls leases.Manager) ([]leaseJSON, error) {
	all, err := ls.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	out := []leaseJSON{}
	for _, l := range all {
		rs, err := ls.ListResources(ctx, l)
		if err != nil {
			return nil, fmt.Errorf("list resources of lease %s: %w", l.ID, err)
		}
		lj := leaseJSON{ID: l.ID, CreatedAt: stamp(l.CreatedAt), Labels: l.Labels, Resources: []resourceJSON{}}
		for _, r := range rs {
			lj.Resources = append(lj.Resources, resourceJSON{Type: r.Type, ID: r.ID})
		}
		sort.Slice(lj.Resources, func(i, j int) bool {
			a, b := lj.Resources[i], lj.Resources[j]
			return a.Type < b.Type || (a.Type == b.Type && a.ID < b.ID)
		})
		out = append(out, lj)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// opDump reads back content, ingests, snapshots per snapshotter, leases and images.
func opDump(ctx context.Context, client *containerd.Client, ns string, req request) (interface{}, error) {
	d := dumpJSON{Namespace: ns, Now: stamp(time.Now()), Content: []contentJSON{},
		Ingests: []ingestJSON{}, Snapshots: map[string][]snapshotJSON{}, Images: []imageJSON{}}
	if err := dumpContent(ctx, client.ContentStore(), &d); err != nil {
		return nil, err
	}
	for _, name := range req.Snapshotters {
		snaps, err := dumpSnapshots(ctx, client.SnapshotService(name))
		if err != nil {
			return nil, fmt.Errorf("walk snapshotter %s: %w", name, err)
		}
		d.Snapshots[name] = snaps
	}
	ls, err := dumpLeases(ctx, client.LeasesService())
	if err != nil {
		return nil, err
	}
	d.Leases = ls
	imgs, err := client.ImageService().List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	for _, img := range imgs {
		d.Images = append(d.Images, *toImageJSON(img))
	}
	sort.Slice(d.Images, func(i, j int) bool { return d.Images[i].Name < d.Images[j].Name })
	return d, nil
}

// opGC runs one synchronous garbage collection: the lease service's SynchronousDelete
// calls the GC scheduler's ScheduleAndWait (metadata/leases.go, gc/scheduler).
func opGC(ctx context.Context, client *containerd.Client) (interface{}, error) {
	ls := client.LeasesService()
	l, err := ls.Create(ctx, leases.WithRandomID())
	if err != nil {
		return nil, fmt.Errorf("create gc lease: %w", err)
	}
	if err := ls.Delete(ctx, l, leases.SynchronousDelete); err != nil {
		return nil, fmt.Errorf("delete gc lease: %w", err)
	}
	return outcome{OK: true}, nil
}

func opDeleteImage(ctx context.Context, client *containerd.Client, req request) (interface{}, error) {
	var opts []images.DeleteOpt
	if req.Sync {
		opts = append(opts, images.SynchronousDelete())
	}
	return outcomeOf(client.ImageService().Delete(ctx, req.Name, opts...)), nil
}

func opCreateLease(ctx context.Context, client *containerd.Client, req request) (interface{}, error) {
	opts := []leases.Opt{leases.WithID(req.Name)}
	if len(req.Labels) > 0 {
		opts = append(opts, leases.WithLabels(req.Labels))
	}
	if req.Expire != "" {
		d, err := time.ParseDuration(req.Expire)
		if err != nil {
			return nil, fmt.Errorf("bad expire %q: %w", req.Expire, err)
		}
		opts = append(opts, leases.WithExpiration(d))
	}
	_, err := client.LeasesService().Create(ctx, opts...)
	return outcomeOf(err), nil
}

func opDeleteLease(ctx context.Context, client *containerd.Client, req request) (interface{}, error) {
	var opts []leases.DeleteOpt
	if req.Sync {
		opts = append(opts, leases.SynchronousDelete)
	}
	return outcomeOf(client.LeasesService().Delete(ctx, leases.Lease{ID: req.Name}, opts...)), nil
}

func opVersion(ctx context.Context, client *containerd.Client) (interface{}, error) {
	v, err := client.Version(ctx)
	if err != nil {
		return nil, fmt.Errorf("version: %w", err)
	}
	serving, err := client.IsServing(ctx)
	if err != nil {
		return nil, fmt.Errorf("serving: %w", err)
	}
	return map[string]interface{}{"version": v.Version, "revision": v.Revision, "serving": serving}, nil
}

func run(ctx context.Context, client *containerd.Client, ns, op string, req request) (interface{}, error) {
	switch op {
	case "version":
		return opVersion(ctx, client)
	case "pull":
		return opPull(ctx, client, req)
	case "dump":
		return opDump(ctx, client, ns, req)
	case "gc":
		return opGC(ctx, client)
	case "delete-image":
		return opDeleteImage(ctx, client, req)
	case "create-lease":
		return opCreateLease(ctx, client, req)
	case "delete-lease":
		return opDeleteLease(ctx, client, req)
	}
	return nil, fmt.Errorf("unknown operation %q", op)
}

func fail(code int, format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "harness: "+format+"\n", args...)
	os.Exit(code)
}

func main() {
	address := flag.String("address", "", "the daemon's gRPC socket")
	ns := flag.String("namespace", "default", "the containerd namespace")
	timeout := flag.Duration("timeout", 60*time.Second, "bound on the whole operation")
	flag.Parse()
	if *address == "" || flag.NArg() != 1 {
		fail(2, "usage: harness -address SOCKET [-namespace NS] [-timeout D] OP < request.json")
	}
	var req request
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(2, "read request: %v", err)
	}
	if len(strings.TrimSpace(string(raw))) > 0 {
		if err := json.Unmarshal(raw, &req); err != nil {
			fail(2, "bad request JSON: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), *ns), *timeout)
	defer cancel()
	dial := 10 * time.Second
	if *timeout < dial {
		dial = *timeout
	}
	client, err := containerd.New(*address, containerd.WithDefaultNamespace(*ns),
		containerd.WithTimeout(dial))
	if err != nil {
		fail(3, "connect to %s: %v", *address, err)
	}
	defer client.Close()
	resp, err := run(ctx, client, *ns, flag.Arg(0), req)
	if err != nil {
		fail(4, "%s: %v", flag.Arg(0), err)
	}
	if err := json.NewEncoder(os.Stdout).Encode(resp); err != nil {
		fail(5, "write response: %v", err)
	}
}
