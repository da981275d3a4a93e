# Voila's configuration for `make dashboard`, which points Voila here (--Voila.config_file_paths=config).
# Not at the project root: a voila.py there would shadow the voila package itself. README "Dashboard" explains it.
from drawai.dashboard import max_sessions, prelaunch

c = get_config()  # noqa: F821 -- provided by traitlets when it loads this file

# Visitors see a message, never a traceback (Voila's default, stated); the source code is not sent to them.
c.VoilaConfiguration.show_tracebacks = False
c.VoilaConfiguration.strip_sources = True
# Per page request: sets the cookie that lets a page shut its kernel down when it unloads, and caps the
# sessions at $DRAWAI_MAX_SESSIONS (default 8) kernels.
c.VoilaConfiguration.prelaunch_hook = prelaunch
max_sessions()  # a bad $DRAWAI_MAX_SESSIONS stops the server at start, not every visitor
# A page that vanished without unloading (browser crash, lost network) leaves its kernel: shut down kernels
# with no page connected after 10 idle minutes, checking every minute. Connected pages are never culled.
c.MappingKernelManager.cull_idle_timeout = 600
c.MappingKernelManager.cull_interval = 60
c.MappingKernelManager.cull_connected = False
