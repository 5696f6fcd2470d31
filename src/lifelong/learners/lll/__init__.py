"""The Lightweight Lifelong Learner (SKILL paper, section 3) and the pieces it is made of.

``learner`` is the learner itself; ``features`` the frozen-backbone featuriser, ``anchors`` the
task anchors (GMMC, Mahalanobis), ``h2t`` the Head2Toe channel selection, ``names`` the class-name
embedder, ``bundle`` the shareable form of one learned task (the trust boundary for received
bytes) and ``admission`` the stream-level checks a received bundle must also pass. Agents and the
population that share these bundles live above the runner, in :mod:`lifelong.skill`.
"""

from lifelong.learners.lll.learner import LLL

__all__ = ["LLL"]
