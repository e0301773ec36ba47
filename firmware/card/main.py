# Entry point on the card (the image's /main.py imports this and calls main()).
from .app import Card


def main():
    Card().run()
