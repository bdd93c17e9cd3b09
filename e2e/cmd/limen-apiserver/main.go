// limen-apiserver runs a real kube-apiserver (k8s.io/kubernetes, built from Go
// modules) in-process on top of an embedded single-member etcd, for Limen's
// end-to-end tests. There is no kubelet and no controller-manager.
//
//	limen-apiserver --dir DIR [--port N]
//
// DIR receives the certificates and keys it generates (kept across restarts),
// the etcd data, DIR/kubeconfig (cluster-admin: a client certificate in
// system:masters), DIR/limited.kubeconfig (a client certificate for user
// "limen-limited" with no groups), DIR/url and, once /readyz answers ok,
// DIR/ready. SIGTERM or SIGINT shuts the API server down gracefully, then
// etcd; a second signal exits at once.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

const (
	serviceCIDR = "10.0.0.0/24"
	issuer      = "https://kubernetes.default.svc.cluster.local"
)

// Admission plugins that would need a controller we do not run, or objects
// nobody creates here (ServiceAccount waits for the token controller's
// "default" ServiceAccount). NamespaceLifecycle stays: a deleted namespace
// then stays Terminating, as it would with a stuck namespace controller.
const disabledAdmission = "ServiceAccount,ResourceQuota,LimitRanger," +
	"StorageObjectInUseProtection,PersistentVolumeClaimResize,DefaultStorageClass"

func main() {
	dir := flag.String("dir", "", "work directory: certificates, etcd data, kubeconfig (required)")
	port := flag.Int("port", 0, "secure port on 127.0.0.1 (0: pick a free one)")
	verbosity := flag.Int("v", 0, "kube-apiserver log verbosity")
	flag.Parse()
	if *dir == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: limen-apiserver --dir DIR [--port N] [--v N]")
		os.Exit(2)
	}
	if err := run(*dir, *port, *verbosity); err != nil {
		fmt.Fprintln(os.Stderr, "limen-apiserver:", err)
		os.Exit(1)
	}
}

func run(dir string, port, verbosity int) error {
	started := time.Now()
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	os.Remove(filepath.Join(dir, "ready"))
	pki, err := loadOrCreatePKI(filepath.Join(dir, "pki"))
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if port == 0 {
		if port, err = freePort(); err != nil {
			return err
		}
	}
	server := "https://127.0.0.1:" + strconv.Itoa(port)
	if err := writeKubeconfigs(dir, server, pki); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "url"), []byte(server+"\n"), 0o600); err != nil {
		return err
	}

	etcd, etcdURL, err := startEtcd(dir)
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	defer func() {
		etcd.Close()
		fmt.Fprintln(os.Stderr, "limen-apiserver: etcd stopped")
	}()

	args := []string{
		"--advertise-address=127.0.0.1",
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--tls-cert-file=" + pki.path("serving.crt"),
		"--tls-private-key-file=" + pki.path("serving.key"),
		"--client-ca-file=" + pki.path("ca.crt"),
		"--etcd-servers=" + etcdURL,
		"--authorization-mode=RBAC",
		"--anonymous-auth=false",
		"--service-account-issuer=" + issuer,
		"--service-account-key-file=" + pki.path("sa.pub"),
		"--service-account-signing-key-file=" + pki.path("sa.key"),
		"--service-cluster-ip-range=" + serviceCIDR,
		"--disable-admission-plugins=" + disabledAdmission,
		"--allow-privileged=true",
		// the endpoints of service default/kubernetes may not be loopback addresses
		"--endpoint-reconciler-type=none",
		"--profiling=false",
		"--v=" + strconv.Itoa(verbosity),
	}
	cmd := app.NewAPIServerCommand() // installs the SIGTERM/SIGINT handler
	cmd.SetArgs(args)

	readyCtx, stopPolling := context.WithCancel(context.Background())
	defer stopPolling()
	go func() {
		if err := waitReady(readyCtx, server, pki); err != nil {
			return
		}
		os.WriteFile(filepath.Join(dir, "ready"), []byte(server+"\n"), 0o600)
		fmt.Fprintf(os.Stderr, "limen-apiserver: ready %s in %.1fs (kubeconfig %s)\n",
			server, time.Since(started).Seconds(), filepath.Join(dir, "kubeconfig"))
	}()

	err = cmd.Execute()
	stopPolling()
	os.Remove(filepath.Join(dir, "ready"))
	fmt.Fprintln(os.Stderr, "limen-apiserver: kube-apiserver stopped")
	return err
}

func startEtcd(dir string) (*embed.Etcd, string, error) {
	clientPort, err := freePort()
	if err != nil {
		return nil, "", err
	}
	peerPort, err := freePort()
	if err != nil {
		return nil, "", err
	}
	client := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(clientPort)}
	peer := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(peerPort)}

	cfg := embed.NewConfig()
	cfg.Name = "limen-e2e"
	cfg.Dir = filepath.Join(dir, "etcd")
	cfg.ListenClientUrls = []url.URL{client}
	cfg.AdvertiseClientUrls = []url.URL{client}
	cfg.ListenPeerUrls = []url.URL{peer}
	cfg.AdvertisePeerUrls = []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.UnsafeNoFsync = true
	// NewConfig leaves this 0, which logs every request as expensive
	cfg.WarningUnaryRequestDuration = embed.DefaultWarningUnaryRequestDuration
	cfg.LogLevel = "warn"
	cfg.LogOutputs = []string{filepath.Join(dir, "etcd.log")}

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, "", err
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, client.String(), nil
	case err := <-e.Err():
		e.Close()
		return nil, "", err
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, "", errors.New("not ready after 60s")
	}
}

// waitReady polls /readyz with the admin client certificate.
func waitReady(ctx context.Context, server string, pki *pki) error {
	cert, err := tls.LoadX509KeyPair(pki.path("admin.crt"), pki.path("admin.key"))
	if err != nil {
		return err
	}
	client := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs:      pki.caPool,
			Certificates: []tls.Certificate{cert},
		}},
	}
	for {
		resp, err := client.Get(server + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && string(body) == "ok" {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// pki is the CA, the serving pair, two client pairs and the service-account
// signing key, all PEM files in one directory.
type pki struct {
	dir    string
	caPool *x509.CertPool
}

func (p *pki) path(name string) string { return filepath.Join(p.dir, name) }

func loadOrCreatePKI(dir string) (*pki, error) {
	p := &pki{dir: dir}
	if _, err := os.Stat(p.path("complete")); err != nil {
		if err := createPKI(p); err != nil {
			return nil, err
		}
	}
	caPEM, err := os.ReadFile(p.path("ca.crt"))
	if err != nil {
		return nil, err
	}
	p.caPool = x509.NewCertPool()
	if !p.caPool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("ca.crt: no certificate")
	}
	return p, nil
}

func createPKI(p *pki) error {
	os.RemoveAll(p.dir)
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return err
	}
	now := time.Now().Add(-time.Hour)
	until := now.Add(10 * 365 * 24 * time.Hour)

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "limen-e2e-ca"},
		NotBefore:             now,
		NotAfter:              until,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	if err := writePEM(p.path("ca.crt"), "CERTIFICATE", caDER); err != nil {
		return err
	}

	leaf := func(name string, tmpl *x509.Certificate) error {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		tmpl.SerialNumber = serial()
		tmpl.NotBefore, tmpl.NotAfter = now, until
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return err
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return err
		}
		if err := writePEM(p.path(name+".crt"), "CERTIFICATE", der); err != nil {
			return err
		}
		return writePEM(p.path(name+".key"), "EC PRIVATE KEY", keyDER)
	}
	if err := leaf("serving", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "limen-e2e-apiserver"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, net.IPv4(10, 0, 0, 1)},
	}); err != nil {
		return err
	}
	if err := leaf("admin", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "limen-admin", Organization: []string{"system:masters"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return err
	}
	if err := leaf("limited", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "limen-limited"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return err
	}

	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return err
	}
	if err := writePEM(p.path("sa.key"), "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(saKey)); err != nil {
		return err
	}
	if err := writePEM(p.path("sa.pub"), "PUBLIC KEY", pubDER); err != nil {
		return err
	}
	return os.WriteFile(p.path("complete"), nil, 0o600)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(err)
	}
	return n
}

func writePEM(path, kind string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600)
}

func writeKubeconfigs(dir, server string, p *pki) error {
	for _, user := range []string{"admin", "limited"} {
		name := "kubeconfig"
		if user != "admin" {
			name = user + ".kubeconfig"
		}
		data := map[string]string{}
		for _, f := range []string{"ca.crt", user + ".crt", user + ".key"} {
			b, err := os.ReadFile(p.path(f))
			if err != nil {
				return err
			}
			data[f] = base64.StdEncoding.EncodeToString(b)
		}
		text := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: limen-e2e
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: limen-%s
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: limen-e2e
  context:
    cluster: limen-e2e
    user: limen-%s
current-context: limen-e2e
`, server, data["ca.crt"], user, data[user+".crt"], data[user+".key"], user)
		tmp := filepath.Join(dir, name+".tmp")
		if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}
