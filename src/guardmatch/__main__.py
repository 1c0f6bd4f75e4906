from guardmatch.cli.main import app

app()
