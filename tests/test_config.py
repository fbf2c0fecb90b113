"""Settings composed from the Hydra config groups, and users' YAML files on top."""

import pytest

from mbo.config import SettingsError, compose_config, merge_settings_file


def test_compose_with_overrides_and_group_choices():
    cfg = compose_config("config", ["diffusion.denoiser.local_kernel=5", "finetune.iterations=7"])
    assert cfg.diffusion.denoiser.local_kernel == 5 and cfg.finetune.iterations == 7
    assert cfg.finetune.sampler == cfg.diffusion.sampler  # one place for the default
    with pytest.raises(SettingsError, match=r"finetune\.iterationz"):
        compose_config("config", ["finetune.iterationz=3"])
    with pytest.raises(SettingsError, match="nonesuch"):
        compose_config("config", ["reward_model=nonesuch"])


def test_a_task_chooses_among_the_general_settings_and_the_command_line_wins():
    tfbind8 = compose_config("config", [])
    assert tfbind8.reward_model.conv_channels and tfbind8.conservative.c == 0
    assert tfbind8.finetune.alpha == 0.01 and tfbind8.oversample == 32
    mine = compose_config("config", ["reward_model=ensemble", "conservative.c=auto", "oversample=8"])
    assert "conv_channels" not in mine.reward_model and mine.conservative.c == "auto"
    assert mine.oversample == 8 and mine.finetune.alpha == 0.01
    ehrlich = compose_config("config", ["task=ehrlich"])
    assert ehrlich.reward_model.conv_channels and ehrlich.conservative.c == "auto"
    assert ehrlich.diffusion.min_prob == 0.01 and tfbind8.diffusion.min_prob == 0.001
    # Ehrlich's designs are steered by gradient guidance; `~method` fine-tunes, as on every other task.
    assert ehrlich.method._target_.endswith("gradient_guidance") and tfbind8.get("method") is None
    assert compose_config("config", ["task=ehrlich", "~method"]).get("method") is None
    # A task without its own choices gets the general defaults.
    csv = compose_config("config", ["task=csv", "task.path=my.csv"])
    assert csv.reward_model.conv_channels and csv.reward_model.dilations is None
    assert csv.conservative.c == "auto"
    assert csv.finetune.alpha == 0.03 and csv.oversample == 8


@pytest.mark.parametrize("text, problem", [
    ("finetune: {iterationz: 3}\n", "unknown setting 'finetune.iterationz'"),
    ("finetune: {iterations: ten}\n", "setting 'finetune.iterations' must be an integer, got 'ten'"),
    ("finetune: {lr: [1]}\n", "setting 'finetune.lr' must be a number"),
    ("seiko: 3\n", "setting 'seiko' is a group of settings"),
    ("- a\n- b\n", "must be a mapping"),
])
def test_settings_file_refuses_unknown_keys_and_wrong_types(tmp_path, text, problem):
    path = tmp_path / "lab.yaml"
    path.write_text(text)
    with pytest.raises(SettingsError) as err:
        merge_settings_file(compose_config("campaign"), path)
    assert str(path) in str(err.value) and problem in str(err.value)


def test_settings_file_values_land_where_they_say(tmp_path):
    path = tmp_path / "lab.yaml"
    path.write_text("finetune: {iterations: 5, lr: 1}\nseiko: {acquisition: thompson}\n")
    cfg = merge_settings_file(compose_config("campaign"), path)
    assert cfg.finetune.iterations == 5 and cfg.finetune.lr == 1 and cfg.seiko.acquisition == "thompson"


def test_settings_chosen_automatically_also_take_a_value(tmp_path):
    import torch

    from mbo.device import set_threads

    path = tmp_path / "run.yaml"
    path.write_text("threads: 2\nprogress: false\nconservative: {c: 3}\n")
    cfg = merge_settings_file(compose_config("config"), path)
    assert cfg.threads == 2 and cfg.progress is False and cfg.conservative.c == 3
    before = torch.get_num_threads()
    set_threads("auto")  # outside a Hydra multirun: torch's default, every core
    assert torch.get_num_threads() == before
    set_threads(1)
    assert torch.get_num_threads() == 1


def test_an_unknown_group_option_is_one_line_naming_the_options():
    with pytest.raises(SettingsError) as refused:
        compose_config("config", ["reward_model=gpp"])
    message = str(refused.value)
    assert message.startswith("In 'config': Could not find 'reward_model/gpp'; Available options in "
                              "'reward_model': bootstrap, calibrated_ensemble, conv_ensemble,")
    assert "\n" not in message and "search path" not in message


def test_a_task_setting_its_constructor_does_not_take_is_named():
    from mbo.config import build_task

    problem = r"task TFBind8: unknown setting\(s\) task.foo; it takes task.landscape"
    with pytest.raises(SettingsError, match=problem):
        build_task(compose_config("config", ["+task.foo=1"]).task)


GROUP_OPTIONS = {
    "task": ["aav", "csv", "ehrlich", "flexs_rna", "inverse_folding", "tfbind8"],
    "reward_model": ["bootstrap", "calibrated_ensemble", "conv_ensemble", "conv_ensemble_dilated", "ensemble",
                     "gp", "variational_gp"],
    "conservative": ["optimistic", "pessimistic"], "finetune": ["backprop", "ppo", "rwr", "vidd"],
    "method": ["best_of_n", "gradient", "refinement", "smc", "svdd_mc", "svdd_pm", "svdd_rollout"],
    "diffusion/sampler": ["first_hitting", "grid"], "ctrl/finetune": ["backprop", "vidd"],
}


@pytest.mark.parametrize("choice", [f"{g}={o}" for g, options in GROUP_OPTIONS.items() for o in options])
def test_every_group_option_sets_only_settings_that_are_read(choice):
    from mbo.config import check_known_settings

    check_known_settings(compose_config("config", [choice, "task.path=x.csv"] if choice == "task=csv"
                                        else [choice]))


@pytest.mark.parametrize("override, problem", [
    ("+n_design=8", "unknown setting 'n_design' (known in the config: auto, cache_dir,"),
    ("+diffusion.pretrain.step=5", "unknown setting 'diffusion.pretrain.step' (known in diffusion.pretrain:"),
    ("+auto.holdouts=0.1", "unknown setting 'auto.holdouts'"),
    ("+constraints.gc_window=[0.4,0.6]", "unknown setting 'constraints.gc_window'"),
    ("+ctrl.factors.1.landscap=X", "unknown setting 'ctrl.factors.1.landscap'"),
    ("+seiko.c=2", "unknown setting 'seiko'"),  # mbo-campaign's group, not mbo-run's
    ("+finetune.iteration=5", "unknown setting 'finetune.iteration' (finetune_vidd takes alpha, iterations,"),
    ("+conservative.cc=2", "unknown setting 'conservative.cc' (PessimisticReward takes c, penalty,"),
    ("+diffusion.denoiser.width=8", "unknown setting 'diffusion.denoiser.width' (TransformerDenoiser takes"),
    ("+auto.method.candidate=2", "unknown setting 'auto.method.candidate' (svdd_pm takes candidates,"),
    ("+reward_model.model.members=2", "unknown setting 'reward_model.model.members'"),
    # Arguments the run passes at the call would override these in silence.
    ("+finetune.seed=3", "setting 'finetune.seed' is ignored: the run passes its own; set seed=… instead"),
    ("+method.progress=true", "setting 'method.progress' is ignored: the run passes its own; set progress="),
    ("+auto.method.generator=1", "setting 'auto.method.generator' is ignored: the run passes its own"),
    ("+reward_model.device=cuda", "setting 'reward_model.device' is ignored: the run passes its own"),
])
def test_a_setting_added_with_plus_that_nothing_reads_is_named(override, problem):
    from mbo.config import check_known_settings

    overrides = [override] + (["reward_model=calibrated_ensemble"] if "model.members" in override else
                              ["method=smc"] if override.startswith("+method.") else [])
    with pytest.raises(SettingsError) as refused:
        check_known_settings(compose_config("config", overrides))
    assert str(refused.value).startswith(problem), refused.value
    # A dict a setting leaves open is the user's own; constraints.allowed is one.
    check_known_settings(compose_config("config", ["constraints.allowed={0: AC}"]))
    # ...and a task's seed is its own setting, not the run's.
    check_known_settings(compose_config("config", ["task=ehrlich", "task.seed=3"]))


def test_a_value_hydra_cannot_read_bare_says_to_quote_it():
    with pytest.raises(SettingsError, match=r"séquence.*goes in quotes: 'key=\"value\"'$"):
        compose_config("config", ["task.sequence_column=séquence"])
    assert compose_config("config", ['task=csv', 'task.sequence_column="séquence"']).task.sequence_column == \
        "séquence"
