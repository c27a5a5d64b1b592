#!/usr/bin/env python3
"""Flower FedAvg vs flock on the same federated workload, side by side.

Workload: scikit-learn's digits (1,797 x 64, bundled with scikit-learn, no download), features
scaled to [0, 1], a stratified 80/20 train/test split (seed 0), the training part split IID into
10 clients (seed 0). Model: a 64-128-10 MLP (ReLU, softmax cross-entropy), Adam lr 1e-2,
batch 32, 1 local epoch per round, 10 rounds, FedAvg weighted by client sample counts.

  flower: flwr[simulation] (Ray backend), the client model is scikit-learn's MLPClassifier
          trained with partial_fit (one epoch per round).
  flock:  the same CSV splits, trained by flock-ml's MLP and aggregated by flock-ml-core's
          deterministic FedAvg (`cargo run -p flock-ml --example fl_digits`): the engine alone.
  flock alliance: the same workload through the whole FL Alliance protocol
          (`cargo run -p flock-agents --example fl_alliance_digits`): a node with ledger and
          artifact store, one agent per client with its own stake, a VRF draw each round (70%
          proposers train and upload; the rest aggregate with FedAvg, evaluate on their own data
          and vote by commit-reveal), and the ledger deciding, paying and slashing. Its rounds are
          block-scheduled ((15 + 15 + 8) blocks of 20 ms by default), so s/round is bounded by
          the schedule, not the compute.

Prints per-round wall time and test accuracy for both. Usage:
  python3 bench/flower/flower_digits.py [--rounds 10] [--clients 10] [--out DIR] [--skip-flock]
                                        [--skip-flower] [--skip-alliance]
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


def prepare(out, clients, seed=0):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=seed, stratify=y)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(Xtr))
    parts = np.array_split(idx, clients)
    os.makedirs(out, exist_ok=True)
    header = ",".join([f"x{i}" for i in range(64)] + ["label"])

    def write(path, Xs, ys):
        np.savetxt(path, np.column_stack([Xs, ys]), delimiter=",", header=header, comments="", fmt="%.6g")

    for c, p in enumerate(parts):
        write(os.path.join(out, f"client_{c}.csv"), Xtr[p], ytr[p])
    write(os.path.join(out, "test.csv"), Xte, yte)
    return [(Xtr[p], ytr[p]) for p in parts], (Xte, yte)


def new_model():
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(hidden_layer_sizes=(128,), solver="adam", learning_rate_init=1e-2,
                         batch_size=32, random_state=0)


def set_params(m, params):
    m.coefs_ = [params[0], params[2]]
    m.intercepts_ = [params[1], params[3]]


def get_params(m):
    return [m.coefs_[0], m.intercepts_[0], m.coefs_[1], m.intercepts_[1]]


def init_model(X, y):
    m = new_model()
    m.partial_fit(X[:10], y[:10], classes=np.arange(10))
    return m


def run_flower(parts, test, rounds):
    import flwr
    from flwr.client import ClientApp, NumPyClient
    from flwr.common import ndarrays_to_parameters
    from flwr.server import ServerApp, ServerAppComponents, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.simulation import run_simulation

    Xte, yte = test
    base = init_model(*parts[0])
    initial = get_params(base)
    marks = []

    class Client(NumPyClient):
        def __init__(self, cid):
            self.X, self.y = parts[cid]

        def fit(self, parameters, config):
            m = init_model(self.X, self.y)
            set_params(m, parameters)
            m.partial_fit(self.X, self.y)  # one epoch over the local data
            return get_params(m), len(self.X), {}

    def client_fn(context):
        return Client(int(context.node_config["partition-id"])).to_client()

    def evaluate(server_round, parameters, config):
        m = init_model(*parts[0])
        set_params(m, parameters)
        acc = float((m.predict(Xte) == yte).mean())
        marks.append((server_round, time.perf_counter(), acc))
        return 1.0 - acc, {"accuracy": acc}

    def server_fn(context):
        strategy = FedAvg(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=len(parts),
                          min_available_clients=len(parts), evaluate_fn=evaluate,
                          initial_parameters=ndarrays_to_parameters(initial))
        return ServerAppComponents(strategy=strategy, config=ServerConfig(num_rounds=rounds))

    start = time.perf_counter()
    run_simulation(server_app=ServerApp(server_fn=server_fn), client_app=ClientApp(client_fn=client_fn),
                   num_supernodes=len(parts), backend_config={"client_resources": {"num_cpus": 1}})
    total = time.perf_counter() - start
    rows = []
    for (r0, t0, _), (r1, t1, acc) in zip(marks, marks[1:]):
        rows.append({"round": r1, "secs": t1 - t0, "accuracy": acc})
    return rows, total, flwr.__version__


def run_flock(out, rounds, repo):
    # The dev profile builds dependencies (burn included) at opt-level 2-3, so no release build
    # of burn is needed for a fair timing.
    cmd = ["cargo", "run", "--quiet", "-p", "flock-ml", "--example", "fl_digits", "--",
           out, str(rounds), "1"]
    start = time.perf_counter()
    res = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, env={**os.environ, "RAYON_NUM_THREADS": "1"})
    if res.returncode != 0:
        print(res.stderr, file=sys.stderr)
        raise SystemExit("flock run failed")
    rows = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    return rows, time.perf_counter() - start


def run_alliance(out, rounds, repo):
    cmd = ["cargo", "run", "--quiet", "-p", "flock-agents", "--example", "fl_alliance_digits", "--",
           out, str(rounds)]
    build = subprocess.run(["cargo", "build", "--quiet", "-p", "flock-agents",
                           "--example", "fl_alliance_digits"], cwd=repo)
    if build.returncode != 0:
        raise SystemExit("flock alliance build failed")
    start = time.perf_counter()
    res = subprocess.run(cmd, cwd=repo, capture_output=True, text=True,
                         env={**os.environ, "RAYON_NUM_THREADS": "1", "RUST_LOG": "error"})
    if res.returncode != 0:
        print(res.stderr, file=sys.stderr)
        raise SystemExit("flock alliance run failed")
    rows = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    return rows, time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "out"))
    ap.add_argument("--skip-flock", action="store_true")
    ap.add_argument("--skip-flower", action="store_true")
    ap.add_argument("--skip-alliance", action="store_true")
    a = ap.parse_args()
    repo = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    parts, test = prepare(a.out, a.clients)
    flower, flower_total, version = ([], 0.0, "-") if a.skip_flower else run_flower(parts, test, a.rounds)
    flock, flock_total = ([], 0.0) if a.skip_flock else run_flock(a.out, a.rounds, repo)
    alliance, alliance_total = ([], 0.0) if a.skip_alliance else run_alliance(a.out, a.rounds, repo)
    print(f"\nFedAvg, {a.clients} IID clients, sklearn digits, 64-128-10 MLP, 1 local epoch, {a.rounds} rounds")
    print(f"| round | flower {version} s/round | flower acc | flock s/round | flock acc | alliance s/round | alliance acc | accepted (proposers/votes) |")
    print("|------:|------------------:|-----------:|--------------:|----------:|-----------------:|-------------:|:--------------------------|")

    def cell(rows, r, key, fmt):
        x = next((x for x in rows if x["round"] == r), None)
        return fmt.format(x[key]) if x else "-"

    for r in range(1, a.rounds + 1):
        x = next((x for x in alliance if x["round"] == r), None)
        acc = f"{'yes' if x['accepted'] else 'no'} ({x['proposers']}/{x['votes']})" if x else "-"
        print(f"| {r:>5} | {cell(flower, r, 'secs', '{:.4f}'):>17} | {cell(flower, r, 'accuracy', '{:.4f}'):>10} "
              f"| {cell(flock, r, 'secs', '{:.4f}'):>13} | {cell(flock, r, 'accuracy', '{:.4f}'):>9} "
              f"| {cell(alliance, r, 'secs', '{:.4f}'):>16} | {cell(alliance, r, 'accuracy', '{:.4f}'):>12} | {acc} |")
    print(f"total wall time: flower {flower_total:.1f} s (includes Ray start-up), flock {flock_total:.1f} s, "
          f"flock alliance {alliance_total:.1f} s (each includes process start; the alliance also starts a node "
          f"and stakes {a.clients} members)")


if __name__ == "__main__":
    main()
