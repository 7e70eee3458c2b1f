"""The baseline of the ingest benchmark: a hello-world Flask app (`gunicorn 'hello:app'`)."""
from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello():
    return "Hello, World!"
