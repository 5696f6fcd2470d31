"""Sequential continual-learning baselines (SKILL paper section 6; lecture part 4): one
file per method, all on :class:`~lifelong.learners.cl.base.MultiHeadNet`."""
