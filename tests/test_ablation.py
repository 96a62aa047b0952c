"""The ablation runner: which switches a preset turns, the rows it trains, and the table it prints."""

from bench import ablation
from idlab import presets


def test_li_presets_switch_the_reference_settings_and_skip_what_cannot_matter():
    base = presets.get("li-mnist-fc").request["base"]
    switches = ablation.switches_of(base, None)
    assert switches == {"init": ("he_normal", "he_truncated"), "inputs": ("standardize", "unit"),
                        "l2": ("all", "kernels")}          # sparse_scope: a fastfood P has none
    sparse = ablation.switches_of({**base, "projection": "sparse", "sparse_scope": "per_tensor"}, None)
    assert "sparse" not in sparse                          # per_tensor is already the lab's default
    assert ablation.switches_of({**base, "projection": "sparse", "sparse_scope": "global"}, ["sparse"]) == {
        "sparse": ("per_tensor", "global")}


def test_rows_turn_one_switch_at_a_time_then_all():
    switches = {"init": ("he_normal", "he_truncated"), "l2": ("all", "kernels")}
    rows = ablation.plan({}, switches, leave_one_out=True)
    assert [label for label, _ in rows] == ["lab defaults", "+ init", "+ l2", "− init", "− l2", "preset"]
    assert dict(rows)["+ init"] == {"theta0_init": "he_truncated", "weight_decay_scope": "all"}
    assert dict(rows)["− l2"] == {"theta0_init": "he_truncated", "weight_decay_scope": "all"}
    assert dict(rows)["preset"] == {"theta0_init": "he_truncated", "weight_decay_scope": "kernels"}


def test_table_shows_changes_against_the_first_row_and_the_published_curve():
    rows = [ablation.Row("lab defaults", {"input_scaling": "standardize"}, {100: [0.5, 0.6]}, 10),
            ablation.Row("+ inputs", {"input_scaling": "unit"}, {100: [0.6, 0.62]}, 11)]
    text = ablation.table(rows, [100], {100: 0.6124})
    assert "| published | | 0.6124 | |" in text
    assert "| lab defaults | input_scaling=standardize | 0.5500 | 10 |" in text
    assert "| + inputs | input_scaling=unit | 0.6100 (+0.0600) | 11 |" in text
