"""The TF Serving deployment files parse with the official protos (or their mirrors)."""

import os

import pytest
import yaml

from hierdiffuse_tf.serving import configs

SERVING = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "serving")


def test_models_config_parses_with_a_version_policy():
    config = configs.parse_models_config(os.path.join(SERVING, "models.config"))
    (model,) = config.model_config_list.config
    assert model.name == "hierdiffuse" and model.model_platform == "tensorflow"
    assert model.model_version_policy.latest.num_versions == 2


def test_batching_parameters_parse_and_are_consistent(tmp_path):
    params = configs.parse_batching_parameters(os.path.join(SERVING, "batching_parameters.txt"))
    assert params.max_batch_size.value == 1024 and params.batch_timeout_micros.value == 2000
    assert list(params.allowed_batch_sizes)[-1] == 1024
    bad = tmp_path / "bad.txt"
    bad.write_text("max_batch_size { value: 64 }\nmax_batch_sise { value: 1 }\n")
    with pytest.raises(ValueError, match="max_batch_sise"):
        configs.parse_batching_parameters(str(bad))
    bad.write_text("max_batch_size { value: 64 }\nallowed_batch_sizes: 32\n")
    with pytest.raises(ValueError, match="end at max_batch_size"):
        configs.parse_batching_parameters(str(bad))


def test_monitoring_config_enables_prometheus():
    config = configs.parse_monitoring_config(os.path.join(SERVING, "monitoring.config"))
    assert config.prometheus_config.enable and config.prometheus_config.path.startswith("/monitoring")


@pytest.mark.parametrize("name,gpu", [("docker-compose.gpu.yml", True), ("docker-compose.cpu.yml", False)])
def test_compose_files_enable_batching_and_warmup(name, gpu):
    service = yaml.safe_load(open(os.path.join(SERVING, name)))["services"]["tfserving"]
    flags = service["command"]
    assert "--enable_batching=true" in flags and "--enable_model_warmup=true" in flags
    assert service["image"].startswith("tensorflow/serving:") and service["image"].endswith("-gpu") == gpu
    for flag in flags:
        if flag.startswith(("--model_config_file", "--batching_parameters_file", "--monitoring_config_file")):
            assert os.path.exists(os.path.join(SERVING, os.path.basename(flag.split("=", 1)[1])))
    if gpu:
        assert service["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
