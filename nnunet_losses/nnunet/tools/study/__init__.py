"""``nnunet_losses_study``: which loss to train on a dataset, and is the difference real; docs/study.md.

- definition.py: what a study is (arms = trainer + options, folds, seeds, schedule, test set), JSON;
- folder.py: the study folder: paths, study.json, per-run state files (atomic), the lock;
- run.py: :func:`execute_run`, one run (nnUNetv2_train, ``--c``, nnUNetv2_predict), what an executor runs;
- executor.py: submitit executors: local (N at a time, one per device) and SLURM (job arrays);
- grid.py: preparing a study, the runs' specs, running them (retry once, resume, interrupt), successive halving;
- statistics.py: run-level tests (Wilcoxon over runs, Holm over arms) and the degenerate-solution screen;
- report.py: nnunet_losses_compare on test and cross-validation predictions, report.md and its CSVs and plots;
- csv_files.py: the study's CSV files, read and written;
- adopt.py: another study's matching runs copied instead of trained again;
- restore.py: a study whose folder was lost, continued from the CSV files its report left;
- cli.py: the command line (``run``, ``status``, ``report``, ``adopt``, ``restore``; ``entry_point``).

nnU-Net is used through its own commands; the trainers are never imported here.
"""
