"""The runtime: a scenario becomes a plan (:mod:`.plan`), is resolved against the plugins
(:mod:`.resolve`, pure), has what it needs made (:mod:`.materialise`), and runs trial by trial
in a :class:`~.session.DeviceSession` (:mod:`.execute`, used by the local executor plugin
:mod:`.local`)."""
