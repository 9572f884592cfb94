import atexit
import os
import secrets
import shutil
import tempfile

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = os.environ.get("DFDC_SAMPLES", os.path.join(ROOT, "..", "shared", "data", "dfdc_samples"))
UNLABELED = os.path.join(os.path.dirname(SAMPLES), "dfdc_unlabeled")
DEMO = os.path.join(ROOT, "dfdc_fast", "assets", "demo")
# Ray reads this when imported: "0" keeps the test clusters on 127.0.0.1 (else Ray binds the host's address)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
# Token authentication for every Ray cluster the tests start, with this process's own token:
# ray.init() turns it on for a cluster it starts, ray.cluster_utils.Cluster only when a token
# exists already (~/.ray/auth_token, which a fresh machine lacks). Read by Ray when imported.
_RAY_AUTH = tempfile.mkdtemp(prefix="dfdc-fast-ray-auth-")
atexit.register(shutil.rmtree, _RAY_AUTH, True)
with open(os.path.join(_RAY_AUTH, "auth_token"), "w") as _f:
    _f.write(secrets.token_hex(32))
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN_PATH", os.path.join(_RAY_AUTH, "auth_token"))


if os.environ.get("PYTEST_XDIST_WORKER"):
    # CI runs two test processes on two cores: one thread each (and for the jobs they start),
    # rather than two processes of two OpenMP threads spinning against each other
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU (skipped without one unless FAIL_WITHOUT_CUDA=1)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


# files with minutes of work go first, so that the two test processes end together
# (whole files are scheduled in collection order; a long one collected last is a long tail)
LONG_FILES = ("test_kaggle.py", "test_gpu_session.py", "test_train.py", "test_extract.py", "test_readme.py", "test_recipes.py",
              "test_infer.py", "test_detect.py", "test_track_real.py", "test_engine.py", "test_bench.py", "test_streaming.py")


# The fast lane (`pytest -m "not slow"`) leaves out these tests too: each took 15 s or more
# (or needs a fixture that did) in --durations runs on the shared 2-core machine, under load
# (file::test function, every parametrization).
# Marked here rather than in files other work edits; a name that no longer exists fails.
SLOW_TESTS = (
    "test_extract.py::test_killed_run_resumes_to_the_same_index",                    # 102 s
    "test_extract.py::test_worker_processes_write_the_same_outputs_as_one_process",  # 86 s
    "test_extract.py::test_demo_default_clips_crops_sheet_and_resume",               # 50 s
    "test_engine.py::test_worker_processes_give_the_same_results",                   # 78 s + 54 s
    "test_engine.py::test_a_dying_worker_is_replaced_and_its_video_fails",           # 36 s
    "test_engine.py::test_host_syncs_per_video_are_bounded",                         # 31 s
    "test_engine.py::test_a_hanging_video_times_out",                                # 18 s
    "test_cli.py::test_detect_cli_writes_one_line_per_sampled_frame",                # 28 s
    "test_infer.py::test_one_row_per_video_with_probabilities_in_range",             # its fixture: 219 s
    "test_infer.py::test_bad_inputs_get_half_and_a_status",                          # the same fixture
    "test_infer.py::test_the_video_score_is_the_aggregate_of_its_faces",             # the same fixture
    "test_infer.py::test_cli",                                                       # 38 s
    "test_streaming.py::test_a_streamed_video_equals_one_pass_over_it",              # 33 s + 29 s
)


def _mark_slow(items) -> None:
    names = set(SLOW_TESTS)
    for item in items:
        if f"{os.path.basename(str(item.fspath))}::{getattr(item, 'originalname', item.name)}" in names:
            item.add_marker(pytest.mark.slow)
    for name in SLOW_TESTS:
        path, function = name.split("::")
        with open(os.path.join(ROOT, "tests", path), encoding="utf-8") as f:
            if f"def {function}(" not in f.read():
                raise pytest.UsageError(f"conftest.SLOW_TESTS names {name}, which does not exist")


def pytest_collection_modifyitems(config, items):
    _mark_slow(items)
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(os.path.basename(str(item.fspath)), len(rank)))
    if torch.cuda.is_available() or os.environ.get("FAIL_WITHOUT_CUDA") == "1":
        return
    skip = pytest.mark.skip(reason="no CUDA GPU (set FAIL_WITHOUT_CUDA=1 to fail instead)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def samples_dir():
    """The 20 real DFDC clips. Missing in CI is a failure, not a skip."""
    if not os.path.isfile(os.path.join(SAMPLES, "metadata.json")):
        msg = f"DFDC sample clips not found at {SAMPLES} (set DFDC_SAMPLES)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return os.path.realpath(SAMPLES)


@pytest.fixture(autouse=True)
def _fresh_write_faults():
    """``DFDC_FAST_FAULT=enospc:N`` counts the writes of its own test, not those before it."""
    from dfdc_fast import files

    files._writes["n"] = 0
    yield


@pytest.fixture(autouse=True)
def _restore_rng():
    state = torch.get_rng_state()
    yield
    torch.set_rng_state(state)


@pytest.fixture
def fake_gpu():
    """``dfdc_fast.bench.fake_cuda.fake_cuda`` for a test, checked to leave nothing patched behind.

    Use ``with fake_gpu(replay=reads) as fc:`` (reads from ``record_fetches`` on a CPU run).
    """
    from dfdc_fast import runtime
    from dfdc_fast.bench.fake_cuda import fake_cuda

    available = torch.cuda.is_available
    yield fake_cuda
    assert runtime.FETCH_HOOKS == [], "a fetch hook was left installed"
    assert torch.cuda.is_available is available, "torch.cuda stand-ins were left installed"


@pytest.fixture(scope="session")
def ray_cluster():
    """One Ray cluster for the whole test session, on 127.0.0.1 with token authentication
    (the token set up at the top of this file): a head and a worker node of one CPU each (a
    node can be removed and added back). Ray is the optional extra dfdc_fast[ray]; missing
    in CI is a failure, not a skip."""
    try:
        import ray
        from ray.cluster_utils import Cluster
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail('Ray not installed in CI (.ci/run installs the extra: pip install -e ".[ray]")')
        pytest.skip('Ray not installed: pip install "dfdc_fast[ray]"')
    node = dict(num_cpus=1, object_store_memory=80 * 2**20, include_dashboard=False)
    cluster = Cluster(initialize_head=True, head_node_args=node)
    worker = cluster.add_node(**node)
    cluster.node_args = node
    cluster.worker = worker
    ray.init(address=cluster.address, logging_level="WARNING")
    cluster.wait_for_nodes()
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
