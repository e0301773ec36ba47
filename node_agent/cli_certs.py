"""``nodectl certs ca|hub|node|revoke|dev``: the certificates of the HQ link (over ``central_link.certs``).

All of them live in one folder (``--dir``, default ``certs``; made mode 0700 when missing). Private
keys are written mode 0600 and never replaced without ``--force``. Exit status 0 done, 2 not done.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from central_link import certs

DEFAULT_DIR = "certs"


def add_parser(sub, common: argparse.ArgumentParser) -> None:
    c = sub.add_parser("certs", parents=[common], help="certificates for the HQ link: CA, hub, nodes, revocation",
                       description="Make the deployment's development CA, the hub's certificate and the nodes' "
                                   "(CN = node id) for the mutual-TLS link to HQ, and revoke a node's "
                                   "(docs/central-link.md). Keys: mode 0600, never replaced without --force.")
    csub = c.add_subparsers(dest="action", required=True)
    folder = argparse.ArgumentParser(add_help=False)
    folder.add_argument("--dir", default=DEFAULT_DIR, help=f"the certificates' folder (default {DEFAULT_DIR})")
    folder.add_argument("--force", action="store_true", help="replace files that exist")
    ca = csub.add_parser("ca", parents=[common, folder], help="a new CA (ca.crt, ca.key) and its revocation list")
    ca.add_argument("--name", default="branchnode development CA", help="the CA's common name")
    hub = csub.add_parser("hub", parents=[common, folder], help="the hub's certificate (hub.crt, hub.key)")
    hub.add_argument("--host", action="append", help="a DNS name or IP the hub is reached at (repeatable; "
                                                      "default localhost and 127.0.0.1)")
    node = csub.add_parser("node", parents=[common, folder], help="a node's certificate (node-ID.crt, .key)")
    node.add_argument("node_id", help="the node id (its [node] id), which becomes the certificate's CN")
    rev = csub.add_parser("revoke", parents=[common, folder], help="revoke a node's certificate (ca.crl)",
                          description="Add the node's certificate to ca.crl; the hub refuses it from the next "
                                      "connection on, without a restart.")
    rev.add_argument("node_id")
    dev = csub.add_parser("dev", parents=[common, folder], help="what a development setup lacks: CA, hub, nodes",
                          description="Make the CA, the hub's certificate and these nodes' where they are "
                                      "missing; what exists is kept (unless --force). For `make run`.")
    dev.add_argument("node_id", nargs="*")


def run(args) -> int:
    folder = Path(args.dir)
    if not folder.is_dir():
        folder.mkdir(mode=0o700, parents=True)
    paths = certs.Paths(folder)
    if args.action == "ca":
        print(f"CA {certs.make_ca(paths, args.name, force=args.force)} (key {paths.ca[1]}, mode 0600: keep it off "
              f"the appliances), revocation list {paths.crl}")
    elif args.action == "hub":
        names = tuple(args.host) if args.host else certs.HUB_NAMES
        print(f"hub {certs.make_hub(paths, names, force=args.force)} for {', '.join(names)}")
    elif args.action == "node":
        print(f"node {certs.make_node(paths, args.node_id, force=args.force)} (key {paths.node(args.node_id)[1]})")
    elif args.action == "revoke":
        n = certs.revoke(paths, args.node_id)
        print(f"revoked node {args.node_id}: {paths.crl} lists {n} certificate(s)")
    else:
        made = []
        if args.force or not paths.ca[0].exists():
            made.append(certs.make_ca(paths, force=args.force))
        if args.force or not paths.hub[0].exists():
            made.append(certs.make_hub(paths, force=args.force))
        for n in args.node_id:
            if args.force or not paths.node(n)[0].exists():
                made.append(certs.make_node(paths, n, force=args.force))
        print(f"{folder}: made {', '.join(p.name for p in made) if made else 'nothing (all there)'}")
    return 0
