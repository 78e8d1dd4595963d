"""Learning with the kernels: `data` (datasets and the paper's preprocessing), `regression`
(kernel regression and ridge sweeps), `estimator` (scikit-learn estimators and kernels),
`tasks` (kernels and regression over a dataset, as the CLI runs them), `experiment` (`ntkc run`
configurations) and `progress` (progress bars)."""
