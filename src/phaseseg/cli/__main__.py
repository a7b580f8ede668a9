from phaseseg.cli import run

run()
