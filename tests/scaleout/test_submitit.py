"""SLURM's code path: ``hydra/launcher=slurm_local`` runs the README's sweep through submitit (a pickled
job per point, a process each, results read back), as ``hydra/launcher=slurm`` does with sbatch; and
the README's SLURM command gives a valid sbatch script (no SLURM here to submit it to)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from mlflow.tracking import MlflowClient

from runner.core.schema import register_configs

from .engines import REPO_ROOT, readme_command, run_sweep, runner_argv, sweep_children

LOCAL_SWEEP = ".venv/bin/python -m runner -m hydra/launcher=slurm_local"
SLURM_SWEEP = ".venv/bin/python -m runner -m hydra/launcher=slurm"
SECRET = "sk-doc2lora-scaleout-secret"

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="submitit is an extra: pip install -e '.[slurm]'")


@pytest.mark.slow
def test_the_readme_sweep_through_submitit_shares_the_cache_and_keeps_secrets_out_of_the_jobs(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["OPENAI_API_KEY"] = SECRET  # a key in the submitting shell: jobs read it there, never from a pickle
    sweep = run_sweep(runner_argv(readme_command(LOCAL_SWEEP)), tmp_path, env)
    assert sweep.result.returncode == 0, sweep.output[-6000:]

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    parent_id = sweep.parent_run_id()
    children = sweep_children(client, parent_id)
    assert client.get_run(parent_id).info.status == "FINISHED"
    assert sorted(children) == ["job0", "job1"] and {r.info.status for r in children.values()} == {"FINISHED"}
    assert {r.data.params["paths/root"] for r in children.values()} == {str(REPO_ROOT)}
    for stage in ("generate", "answer", "dataset", "prepare_model"):
        assert len(sweep.stage_keys(stage)) == 1, stage
    assert len(sweep.stage_keys("train")) == 2

    pickles = list((tmp_path / "outputs" / "multiruns").rglob(".submitit/*/*.pkl"))
    assert len(pickles) >= 4  # per job: what was submitted and its result
    assert not [p for p in pickles if SECRET.encode() in p.read_bytes()]


def test_the_readme_slurm_command_gives_a_valid_sbatch_script(tmp_path: Path) -> None:
    """The launcher config of the README's SLURM command, as submitit turns it into sbatch lines."""
    import submitit

    readme = readme_command(SLURM_SWEEP)
    overrides = [a for a in readme[3:] if a != "-m" and "," not in a]  # the config of one point
    register_configs()
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"paths.root={REPO_ROOT}", *overrides], return_hydra_config=True)
    launcher = instantiate(cfg.hydra.launcher)
    # what hydra-submitit-launcher hands to submitit's AutoExecutor, which takes None as "not set"
    params = {k: v for k, v in launcher.params.items() if v is not None and k not in ("submitit_folder", "max_num_timeout")}

    class SbatchOnly(submitit.SlurmExecutor):
        @classmethod
        def affinity(cls) -> int:  # no srun here: the script is only written, never submitted
            return 1

    executor = SbatchOnly(folder=tmp_path)
    # the launcher's shared names (timeout_min, mem_gb, ...) in SLURM's terms, as submitit's AutoExecutor does
    executor.update_parameters(**executor._convert_parameters(params))
    script = executor._make_submission_file_text("python -u -m submitit.core._submit", "uid")
    assert "#SBATCH --partition=gpu" in script
    assert "#SBATCH --time=720" in script and "#SBATCH --cpus-per-task=4" in script
    assert subprocess.run(["bash", "-n"], check=False, input=script, text=True).returncode == 0
