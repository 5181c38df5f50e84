from docent.cli import run

run()
