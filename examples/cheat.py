# A program that tries to win by cheating; `codepolicy check examples/cheat.py` names every rule it breaks.
import random


def strategy(board, seen=[]):
    seen.append(board)                          # state kept between moves (mutable default)
    log = open("moves.txt", "a")                # file access
    board[0][0] = 2048                          # allowed but useless: the board is a fresh copy each move
    for row in board:                           # loops are not allowed
        pass
    return random.choice("WASD")                # randomness
