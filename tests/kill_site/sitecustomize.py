"""For tests/test_kill.py: the second `torch.save` of the process writes half its bytes, touches
the file `GRAFTKIT_TEST_STALL_SAVE` names, and hangs, so the test can `kill -9` mid-write."""

import os

_marker = os.environ.get("GRAFTKIT_TEST_STALL_SAVE")

if _marker:
    import builtins

    _real_import = builtins.__import__
    _saves = [0]

    def _patch_torch_save(torch_module):
        real_save = torch_module.save

        def stalling_save(obj, f, *args, **kwargs):
            _saves[0] += 1
            if _saves[0] < 2:
                return real_save(obj, f, *args, **kwargs)
            import io
            import time

            buffer = io.BytesIO()
            real_save(obj, buffer, *args, **kwargs)
            with open(f, "wb") as out:
                out.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
                out.flush()
                os.fsync(out.fileno())
            open(_marker, "w").close()
            while True:
                time.sleep(1)

        torch_module.save = stalling_save

    def _import(name, globals=None, locals=None, fromlist=(), level=0):
        module = _real_import(name, globals, locals, fromlist, level)
        if name == "torch" and not getattr(builtins, "_graftkit_stall_patched", False):
            import sys

            torch_module = sys.modules.get("torch")
            if torch_module is not None and hasattr(torch_module, "save"):
                builtins._graftkit_stall_patched = True
                _patch_torch_save(torch_module)
        return module

    builtins.__import__ = _import
