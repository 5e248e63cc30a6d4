"""Defaults taken from the documents: the topic (PDF title, first heading, file name) and the sample's probes;
`doc2lora` on a user's own PDF runs with that topic and an MLflow run named by its overrides."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from pdfs import build_manual_pdf
from runner.core.derived import clean_topic, derive_topic, sample_probes

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "title,topic",
    [
        ("Quillstream Relay 3.4 Administrator Guide", "Quillstream Relay"),
        ("Proxmox VE Administration Guide", "Proxmox VE"),
        ("Debian Reference", "Debian"),
        ("PostgreSQL 16.2 Documentation", "PostgreSQL"),
        ("Acme Router v2.1 User's Guide", "Acme Router"),
        ("RFC 9110: HTTP Semantics", "RFC 9110: HTTP Semantics"),  # nothing generic to remove
        ("Reference", "Reference"),  # nothing would be left: the title itself
    ],
)
def test_a_title_becomes_a_product_like_topic(title: str, topic: str) -> None:
    assert clean_topic(title) == topic


def test_the_topic_comes_from_pdf_title_then_heading_then_file_name(tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    pdf = build_manual_pdf(tmp_path / "guide.pdf")
    writer = PdfWriter(clone_from=PdfReader(str(pdf)))
    writer.add_metadata({"/Title": "Widget Fleet 7.1 Operator Handbook"})
    titled = tmp_path / "titled.pdf"
    with open(titled, "wb") as handle:
        writer.write(handle)
    markdown = tmp_path / "notes.md"
    markdown.write_text("Some text first.\n\n# Harbour Daemon Manual\n\nBody.\n")

    assert derive_topic([markdown, titled])[0] == "Widget Fleet"  # a PDF's title wins over a heading
    assert derive_topic([markdown]) == ("Harbour Daemon", "first heading of notes.md: 'Harbour Daemon Manual'")
    assert derive_topic([tmp_path / "acme_router-guide.txt"])[0] == "acme router"
    assert derive_topic([]) == ("the documents", "no document")


def test_the_bundled_probes_are_the_default_only_for_the_bundled_sample(composed_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    assert sample_probes(["data/sample/manual.pdf"]) == "data/sample/probes.jsonl"
    assert sample_probes(["/data/vendor-guide.pdf"]) is None
    assert sample_probes(["../shared/corpora/debian-reference/debian-reference.en.pdf"]) == "bench/probes_debian-reference.jsonl"
    assert sample_probes(["a.pdf", "debian-reference.en.pdf"]) is None  # with other documents its probes miss facts
    cfg = composed_cfg()
    assert (cfg.generate.topic, cfg.eval.probes) == ("Quillstream Relay", "data/sample/probes.jsonl")
    other = composed_cfg([f"ingest.documents=[{build_manual_pdf(tmp_path / 'guide.pdf')}]"])
    assert other.eval.probes is None
    assert composed_cfg(["generate.topic=Acme Router"]).generate.topic == "Acme Router"


def test_doc2lora_on_a_users_pdf_takes_the_topic_from_it_and_names_the_run_by_the_overrides(tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    pdf = build_manual_pdf(tmp_path / "plain.pdf")
    writer = PdfWriter(clone_from=PdfReader(str(pdf)))
    writer.add_metadata({"/Title": "Widget Fleet 7.1 Operator Handbook"})
    mine = tmp_path / "my.pdf"
    with open(mine, "wb") as handle:
        writer.write(handle)
    script = Path(sys.executable).parent / "doc2lora"
    assert script.is_file(), "the doc2lora console script is installed with the project"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    overrides = [f"ingest.documents=[{mine}]", "until=chunk"]
    done = subprocess.run(
        [str(script), *overrides, f"paths.output_dir={tmp_path / 'outputs'}", f"paths.mlruns_dir={tmp_path / 'mlruns'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "generate.topic = 'Widget Fleet' (PDF title of my.pdf" in done.stderr + done.stdout
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("doc2lora")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.params["generate/topic"] == "Widget Fleet"
    assert run.info.run_name.startswith(f"ingest.documents=[{mine}]") and "until=chunk" in run.info.run_name
