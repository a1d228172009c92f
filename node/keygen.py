"""`tessera keygen`: create the node key and, optionally, a hotkey binding (and a test wallet)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from node.daemon import BINDING_FILE, KEY_FILE
from p2p.binding import HotkeyBinding
from p2p.errors import P2PError
from p2p.identity import NodeKey


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "keygen",
        help="create a node key and optional hotkey binding",
        description="Create the node's Ed25519 key (mode 0600) in its home; with a wallet, bind "
        "the node's peer id to the wallet's hotkey. Secrets are never printed.",
    )
    p.add_argument("--home", type=Path, required=True, help="node home directory")
    p.add_argument("--wallet-name", help="bittensor wallet whose hotkey signs the binding")
    p.add_argument("--wallet-hotkey", default="default", help="hotkey name in that wallet")
    p.add_argument(
        "--wallet-path",
        type=Path,
        default=Path("~/.bittensor/wallets").expanduser(),
        help="wallets directory",
    )
    p.add_argument(
        "--test-wallet",
        action="store_true",
        help="create the wallet unencrypted if it does not exist (devnets and tests)",
    )
    p.add_argument("--run-id", default="", help="bind for one run only (default: every run)")
    p.add_argument("--binding-days", type=float, default=30.0, help="binding lifetime in days")
    p.set_defaults(func=run)


def _hotkey(args: argparse.Namespace) -> Any:
    from bittensor_wallet import Wallet

    wallet = Wallet(name=args.wallet_name, hotkey=args.wallet_hotkey, path=str(args.wallet_path))
    if args.test_wallet and not wallet.hotkey_file.exists_on_device():
        wallet.create_new_coldkey(use_password=False, suppress=True, overwrite=False)
        wallet.create_new_hotkey(use_password=False, suppress=True, overwrite=False)
    if not wallet.hotkey_file.exists_on_device():
        raise P2PError(
            f"no hotkey {args.wallet_hotkey!r} in wallet {args.wallet_name!r} "
            f"under {args.wallet_path}"
        )
    if wallet.hotkey_file.is_encrypted():
        raise P2PError("the hotkey file is encrypted; tessera needs an unencrypted hotkey")
    return wallet.hotkey


def bind_hotkey(home: Path, key: NodeKey, args: argparse.Namespace) -> HotkeyBinding:
    """Sign (peer id, run, expiry) with the wallet's hotkey and save it in the home."""
    if args.wallet_name is None:
        raise P2PError("a hotkey binding needs --wallet-name")
    hotkey = _hotkey(args)
    ttl = int(args.binding_days * 86400)
    binding = HotkeyBinding.create(hotkey, key.peer_id, run_id=args.run_id, ttl_s=ttl)
    binding.verify(peer_id=key.peer_id, run_id=args.run_id)
    binding.save(home / BINDING_FILE)
    return binding


def run(args: argparse.Namespace) -> int:
    home: Path = args.home
    try:
        home.mkdir(parents=True, exist_ok=True)
        key_path = home / KEY_FILE
        existed = key_path.exists()
        key = NodeKey.load_or_create(key_path)
        print(f"node key:  {key_path} ({'existing' if existed else 'created'}, mode 0600)")
        print(f"peer id:   {key.peer_id}")
        if args.wallet_name is None and not args.test_wallet:
            return 0
        binding = bind_hotkey(home, key, args)
    except (P2PError, OSError) as exc:
        print(f"tessera keygen: {exc}", file=sys.stderr)
        return 1
    print(f"hotkey:    {binding.hotkey}")
    print(
        f"binding:   {home / BINDING_FILE} (run {args.run_id or '*'}, "
        f"expires at unix {binding.expires_at})"
    )
    return 0
