"""The embedded default (no --cluster) is one process tree: building its service imports no Ray."""

import subprocess
import sys
import textwrap


def test_the_default_service_imports_no_ray(tmp_path):
    script = textwrap.dedent(f"""
        import asyncio, sys
        from pathlib import Path
        from gateway.service import Service, Settings

        async def build():
            service = Service(Settings(data_dir=Path({str(tmp_path)!r})), asyncio.get_running_loop())
            service.stop()
            return type(service.trainer_pool).__name__

        print(asyncio.run(build()), "ray" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["InProcessTrainerPool", "False"]
