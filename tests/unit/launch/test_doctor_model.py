"""doctor sizes the weights' disk check for the model `up` will serve (`--model`), not always R-4B."""

from __future__ import annotations

from pathlib import Path

import pytest
from model_folders import LLAMA_CONFIG, LLAMA_PARAMETERS, model_folder

from r4b_deploy.errors import UsageError
from r4b_deploy.launch import doctor
from r4b_deploy.spec import model_spec, named_spec

QWEN = "qwen3-vl-4b-thinking"


def test_the_weights_check_needs_the_planned_model_s_weights(tmp_path: Path) -> None:
    qwen, r4b = named_spec(QWEN), model_spec()
    assert qwen.parameters != r4b.parameters  # else this test could not tell them apart
    check = doctor.check_weights_disk(tmp_path, rehearsal=False, spec=qwen)
    need_bytes = qwen.parameters * qwen.weight_bytes_per_param[doctor.WEIGHTS_DTYPE]
    assert qwen.model_id in check.message and f"about {doctor._gb(need_bytes)} needed" in check.message
    default = doctor.check_weights_disk(tmp_path, rehearsal=False)  # no model: R-4B, as before
    assert r4b.model_id in default.message


def test_run_doctor_takes_model_as_plan_does(tmp_path: Path) -> None:
    report = doctor.run_doctor(runtime="process", model=QWEN, hf_cache_dir=tmp_path, probe_gpu_request=False)
    weights = next(c for c in report.checks if c.name == "disk-weights")
    assert named_spec(QWEN).model_id in weights.message
    with pytest.raises(UsageError):
        doctor.run_doctor(runtime="process", model="no-such-model", hf_cache_dir=tmp_path)


def test_a_model_folder_downloads_nothing(tmp_path: Path) -> None:
    folder = model_folder(tmp_path, "Llama-3.1-8B", LLAMA_CONFIG, parameters=LLAMA_PARAMETERS)
    report = doctor.run_doctor(runtime="process", model=str(folder), hf_cache_dir=tmp_path, probe_gpu_request=False)
    by_name = {c.name: c for c in report.checks}
    assert by_name["disk-weights"].status == "skip" and str(folder) in by_name["disk-weights"].message
    assert by_name["hf-token"].status == "skip"
