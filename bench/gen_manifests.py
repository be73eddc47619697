#!/usr/bin/env python3
"""Writes a manifest directory for benchmarking Sluice.

bench.local (plus --hosts - 1 generated hosts h<i>.bench.local) routed to one backend address,
each host with two Prefix paths and its own Service + EndpointSlice; the first --tls hosts get
TLS with the given certificate (bench.local always does when --cert is given). ssl-redirect is
off so the plain-HTTP scenarios reach the backend instead of a redirect.
"""
import argparse
import os


def block(text, indent):
    pad = " " * indent
    return "".join(pad + line + "\n" for line in text.splitlines())


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, help="directory to write (created)")
    ap.add_argument("--backend", default="127.0.0.1:18080", help="backend ip:port")
    ap.add_argument("--hosts", type=int, default=1, help="number of hosts (Ingresses)")
    ap.add_argument("--tls", type=int, default=1, help="how many hosts get a TLS Secret")
    ap.add_argument("--cert", help="PEM certificate for TLS hosts")
    ap.add_argument("--key", help="PEM key for TLS hosts")
    ap.add_argument("--cert2", help="a second certificate (e.g. ECDSA beside RSA): dual-certificate hosts")
    ap.add_argument("--key2", help="PEM key of --cert2")
    ap.add_argument("--per-file", type=int, default=1000, help="hosts per manifest file")
    args = ap.parse_args()

    ip, port = args.backend.rsplit(":", 1)
    cert = open(args.cert).read() if args.cert else None
    key = open(args.key).read() if args.key else None
    cert2 = open(args.cert2).read() if args.cert2 else None
    key2 = open(args.key2).read() if args.key2 else None
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "class.yaml"), "w") as f:
        f.write(
            "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: sluice\n"
            "spec:\n  controller: sluice.dev/ingress-controller\n"
        )

    docs = []
    file_no = 0

    def flush():
        nonlocal docs, file_no
        if docs:
            with open(os.path.join(args.out, f"hosts-{file_no:04d}.yaml"), "w") as f:
                f.write("---\n".join(docs))
            file_no += 1
            docs = []

    for i in range(args.hosts):
        host = "bench.local" if i == 0 else f"h{i}.bench.local"
        name = f"bench-{i}"
        docs.append(
            f"apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: bench\n"
            f"spec:\n  ports:\n    - name: http\n      port: 80\n      targetPort: {port}\n"
        )
        docs.append(
            f"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-1\n"
            f"  namespace: bench\n  labels:\n    kubernetes.io/service-name: {name}\n"
            f"addressType: IPv4\nports:\n  - name: http\n    port: {port}\n"
            f"endpoints:\n  - addresses: [\"{ip}\"]\n    conditions:\n      ready: true\n"
        )
        tls = ""
        if cert and key and i < max(args.tls, 1):
            docs.append(
                f"apiVersion: v1\nkind: Secret\ntype: kubernetes.io/tls\nmetadata:\n"
                f"  name: {name}-tls\n  namespace: bench\nstringData:\n  tls.crt: |\n"
                + block(cert, 4)
                + "  tls.key: |\n"
                + block(key, 4)
            )
            tls = f"  tls:\n    - hosts: [\"{host}\"]\n      secretName: {name}-tls\n"
            if cert2 and key2:
                docs.append(
                    f"apiVersion: v1\nkind: Secret\ntype: kubernetes.io/tls\nmetadata:\n"
                    f"  name: {name}-tls2\n  namespace: bench\nstringData:\n  tls.crt: |\n"
                    + block(cert2, 4)
                    + "  tls.key: |\n"
                    + block(key2, 4)
                )
                tls += f"    - hosts: [\"{host}\"]\n      secretName: {name}-tls2\n"
        docs.append(
            f"apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n"
            f"  namespace: bench\n  annotations:\n"
            f"    nginx.ingress.kubernetes.io/ssl-redirect: \"false\"\n"
            f"spec:\n  ingressClassName: sluice\n{tls}  rules:\n    - host: {host}\n"
            f"      http:\n        paths:\n"
            f"          - path: /\n            pathType: Prefix\n            backend:\n"
            f"              service:\n                name: {name}\n                port:\n"
            f"                  name: http\n"
            f"          - path: /api\n            pathType: Prefix\n            backend:\n"
            f"              service:\n                name: {name}\n                port:\n"
            f"                  number: 80\n"
        )
        if (i + 1) % args.per_file == 0:
            flush()
    flush()


if __name__ == "__main__":
    main()
