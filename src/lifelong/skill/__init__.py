"""SKILL's population: agents that learn tasks in parallel (locally or as Ray actors), sign and
share the bundles their Lightweight Lifelong Learners make, and the report of a run. The learner
itself lives below the runner, in :mod:`lifelong.learners.lll`."""
