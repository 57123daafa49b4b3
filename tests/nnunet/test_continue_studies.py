"""``python -m benchmarks.studies.continue_studies``: the studies of the plan, in order, restored on a new machine,
the width study after the grid it shares runs with, and a stop with what is left when a study is not finished."""
import os

from benchmarks.studies import continue_studies as cs
from nnunet_losses.nnunet.tools.study.definition import load_definition
from nnunet_losses.nnunet.tools.study.folder import StudyFolder, run_id


def _finish(root, name, status_of=lambda arm, fold, seed: "done"):
    definition, _ = load_definition(cs.definition_path(name))
    folder = StudyFolder(cs.study_folder(root, name))
    for r in definition.runs():
        folder.write_state(run_id(*r), status=status_of(*r))


class FakeCommands:
    """Records each command; ``nnunet_losses_study run`` of a study sets its runs' states (``outcome[name]``)."""

    def __init__(self, root, outcome, fail=()):
        self.root, self.outcome, self.fail, self.calls = root, outcome, fail, []

    def __call__(self, cmd, env, cwd):
        self.calls.append(cmd)
        assert cwd == cs.REPO and env["nnUNet_n_proc_DA"] == "0"
        step = cmd[1] if cmd[0].endswith("nnunet_losses_study") else "prepare"
        name = os.path.basename(cmd[2]) if step != "prepare" else os.path.basename(cmd[3])[:-len(".json")]
        if step == "prepare":
            assert env["nnUNet_raw"] == os.path.join(cs.dataset_root(self.root, name), "nnUNet_raw")
        if (step, name) in self.fail:
            return 2
        if step == "run":
            _finish(self.root, name, self.outcome[name])
        return 0

    def steps(self):
        return [(c[1] if c[0].endswith("nnunet_losses_study") else "prepare",
                 os.path.basename(c[2]) if c[0].endswith("nnunet_losses_study") else os.path.basename(c[3]))
                for c in self.calls]


def test_a_new_machine_restores_each_study_and_goes_on_in_the_planned_order(tmp_path, capsys):
    root = str(tmp_path)
    fake = FakeCommands(root, {"hippocampus_every_trainer": lambda a, f, s: "stopped" if a == "GDL" else "done",
                               "hippocampus_contour_width": lambda a, f, s: "done",
                               "drive_every_trainer": lambda a, f, s: "paused" if f == 4 else "done"})
    assert cs.main(["--root", root, "--jobs", "2"], call=fake) == 1
    grid, width, drive = "hippocampus_every_trainer", "hippocampus_contour_width", "drive_every_trainer"
    assert fake.steps() == [("prepare", f"{grid}.json"), ("restore", grid), ("run", grid),
                            ("prepare", f"{width}.json"), ("restore", width), ("adopt", width), ("run", width),
                            ("prepare", f"{drive}.json"), ("restore", drive), ("run", drive)]
    run_grid = fake.calls[2]
    assert run_grid[-5:] == ["--jobs", "2", "--threads", "1", "--halving"]
    assert fake.calls[5][fake.calls[5].index("--from") + 1] == cs.study_folder(root, grid)  # adopts from the grid
    assert "--halving" not in fake.calls[6]
    assert cs.study_folder(root, grid) == os.path.join(root, "hippocampus", grid)
    assert cs.study_folder(root, drive) == os.path.join(root, "drive", drive)
    out = capsys.readouterr().out
    assert f"{grid}: finished" in out and "drive_every_trainer: not finished, runs left: 30 paused" in out

    fake.calls.clear()  # the next session: finished studies are skipped, restored data is not written again
    assert cs.main(["--root", root], call=fake) == 1
    assert fake.steps() == [("prepare", f"{drive}.json"), ("run", drive)]


def test_a_failed_command_stops_the_chain_and_the_width_study_waits_for_the_grid(tmp_path, capsys):
    root = str(tmp_path)
    fake = FakeCommands(root, {}, fail={("run", "hippocampus_every_trainer")})
    assert cs.main(["--root", root], call=fake) == 1
    assert fake.steps()[-1] == ("run", "hippocampus_every_trainer")
    assert "stopped at the command above" in capsys.readouterr().out

    _finish(root, "hippocampus_every_trainer", lambda a, f, s: "paused" if s == 1 else "done")
    fake.calls.clear()
    assert cs.main(["--root", root, "--only", "hippocampus_contour_width"], call=fake) == 1
    assert fake.calls == [] and "waits for hippocampus_every_trainer" in capsys.readouterr().out


def test_dry_run_prints_the_first_unfinished_study_and_runs_nothing(tmp_path, capsys):
    def never(*args, **kwargs):
        raise AssertionError("a dry run runs nothing")

    assert cs.main(["--root", str(tmp_path), "--dry-run", "--only", "drive_every_trainer"], call=never) == 0
    out = capsys.readouterr().out.splitlines()
    assert [x.split()[3] if "nnunet_losses_study" in x else "prepare" for x in out] == ["prepare", "restore", "run"]
    assert all(x.startswith("would run: ") for x in out)
