"""docs/ci.md's workflows, run here: every ``run:`` step but the installs, as written, against our layers.

The reader's ``mypackage.layers.MyChannelLayer`` is replaced by one of our layers per job (the
only change to a command); a job's ``services:`` address reaches the command the way the
workflow passes it, through the job's ``env:``, here pointing at a server this session started.
The gate narrows each run to two requirements through ``PYTEST_ADDOPTS`` (so the command line
stays the doc's); the extended test runs the commands whole, FAULT area included.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "ci.md"
PLACEHOLDER = "mypackage.layers.MyChannelLayer"
# Which of our layers stands in for the reader's, per (workflow name, job id). A job added to the
# doc without one here fails the test: every workflow the doc shows is run.
STAND_INS = {
    ("conformance", "conformance"): "reference_layers.redis.RedisChannelLayer",
    ("conformance-services", "redis"): "reference_layers.redis.RedisChannelLayer",
    ("conformance-services", "rabbitmq"): "reference_layers.rabbitmq.RabbitMQChannelLayer",
    ("conformance-in-process", "conformance"): "reference_layers.inmemory.InMemoryChannelLayer",
}
# A group requirement and a cross-process one: the server and the config reach the peer process too.
GATE_SELECTION = "--asgi-requirement=GRP-1 --asgi-requirement=XP-1"
RUN_TIMEOUT = 120
WHOLE_RUN_TIMEOUT = 600


@dataclass(frozen=True)
class Job:
    workflow: str
    job_id: str
    env: dict[str, str]
    services: tuple[str, ...]
    scripts: tuple[str, ...]  # the run: steps, installs left out
    installs: tuple[str, ...]

    @property
    def key(self) -> tuple[str, str]:
        return (self.workflow, self.job_id)


def doc_jobs() -> list[Job]:
    """Every job of every YAML workflow in docs/ci.md."""
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)
    assert blocks, "docs/ci.md has no workflow"
    jobs = []
    for block in blocks:
        workflow = yaml.safe_load(block)
        for job_id, job in workflow["jobs"].items():
            runs = [step["run"].strip() for step in job["steps"] if "run" in step]
            jobs.append(Job(workflow["name"], job_id, {k: str(v) for k, v in job.get("env", {}).items()},
                            tuple(job.get("services", {})),
                            tuple(r for r in runs if not r.startswith("pip install")),
                            tuple(r for r in runs if r.startswith("pip install"))))
    return jobs


def start_job(job: Job, workdir: Path, addresses: dict[str, str], addopts: str) -> list[subprocess.Popen]:
    """The job's run: steps, each as Actions runs one (bash -eo pipefail), in the job's env."""
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "ASGI_TEST_"))}
    env.update(job.env)
    env.update({k: v for k, v in addresses.items() if k in job.env})
    env.update({
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",  # this interpreter's pytest
        "PYTHONPATH": str(ROOT),  # stands in for the job's `pip install -e .` of the layer
        "ASGI_TEST_SERVERS": "local",  # no Docker engine here; tests/test_containers.py covers that path
        "PYTEST_ADDOPTS": f"-p no:cacheprovider {addopts}".strip(),
    })
    return [subprocess.Popen(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c",
                              script.replace(PLACEHOLDER, STAND_INS[job.key])],
                             cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for script in job.scripts]


def finish(job: Job, process: subprocess.Popen, timeout: float) -> str:
    out, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, f"{job.key} exited {process.returncode}:\n{out[-4000:]}"
    assert f"ASGI channel layer conformance: {STAND_INS[job.key]}  [mode: strict]" in out, out[-3000:]
    return out


def read_results(workdir: Path) -> tuple[dict[str, str], list[ET.Element]]:
    """The JSON report's verdicts, and the JUnit XML's testcases, the commands wrote."""
    report = json.loads((workdir / "conformance.json").read_text())
    statuses = {row["id"]: row["status"] for row in report["requirements"]}
    cases = list(ET.parse(workdir / "junit.xml").getroot().iter("testcase"))
    return statuses, cases


def requirement_of(case: ET.Element) -> set[str]:
    return {p.get("value", "") for p in case.iter("property") if p.get("name") == "asgi_requirement"}


def service_addresses(redis_urls: list[str], rabbitmq_url: str) -> dict[str, str]:
    """Where the services-variant jobs' env points, here: servers this session started."""
    return {"REDIS_URL": redis_urls[0], "AMQP_URL": rabbitmq_url}


def test_every_doc_job_has_a_stand_in_and_runs_the_suite_strict():
    jobs = doc_jobs()
    assert {job.key for job in jobs} == set(STAND_INS)
    for job in jobs:
        assert job.installs and job.scripts, job
        assert all(PLACEHOLDER in s and "--asgi-strict" in s and "--junitxml=junit.xml" in s for s in job.scripts), job
    addresses = service_addresses(["redis://x"], "amqp://x")
    assert all(any(name in addresses for name in job.env) for job in jobs if job.services)


@pytest.mark.timeout(240)
def test_the_docs_workflows_run_as_written_on_two_requirements(tmp_path, redis_urls, rabbitmq_url):
    jobs = doc_jobs()
    addresses = service_addresses(redis_urls, rabbitmq_url)
    started = [(job, start_job(job, tmp_path / f"{job.workflow}-{job.job_id}", addresses, GATE_SELECTION))
               for job in jobs]
    for job, processes in started:
        for process in processes:
            finish(job, process, RUN_TIMEOUT)
        statuses, cases = read_results(tmp_path / f"{job.workflow}-{job.job_id}")
        assert statuses["GRP-1"] == "PASS", (job.key, statuses)
        in_process = "--asgi-single-process" in " ".join(job.scripts)
        assert statuses["XP-1"] == ("SKIP" if in_process else "PASS"), (job.key, statuses)
        assert {s for s in statuses.values()} <= {"PASS", "SKIP", "NOT RUN"}
        assert cases and all(requirement_of(c) <= {"GRP-1", "XP-1"} and requirement_of(c) for c in cases)
        assert not [c for c in cases if c.find("failure") is not None or c.find("error") is not None]


@pytest.mark.extended
@pytest.mark.timeout(1200)
def test_the_docs_workflows_run_as_written_whole(tmp_path, redis_urls, rabbitmq_url):
    jobs = doc_jobs()
    addresses = service_addresses(redis_urls, rabbitmq_url)
    started = [(job, start_job(job, tmp_path / f"{job.workflow}-{job.job_id}", addresses, "")) for job in jobs]
    for job, processes in started:
        for process in processes:
            finish(job, process, WHOLE_RUN_TIMEOUT)
        statuses, _ = read_results(tmp_path / f"{job.workflow}-{job.job_id}")
        assert "FAIL" not in statuses.values() and "NOT RUN" not in statuses.values(), (job.key, statuses)
        faults = {rid: s for rid, s in statuses.items() if rid.startswith("FAULT-")}
        if "--asgi-faults" in " ".join(job.scripts):  # the plugin's own server: the FAULT area runs
            assert "SKIP" not in {s for rid, s in faults.items() if rid != "FAULT-7"}, (job.key, faults)
