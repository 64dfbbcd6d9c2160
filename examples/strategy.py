def strategy(board):
    """Keep the big tiles in the top-left corner: left and up first, right when stuck, down last."""

    def row_moves(row, towards_start):
        # A row can move towards its start if a tile has an empty cell before it or an equal neighbour.
        cells = row if towards_start else list(reversed(row))
        tiles = list(filter(lambda v: v != 0, cells))
        gap = len(tiles) > 0 and cells[:len(tiles)] != tiles
        pair = any(map(lambda a, b: a == b, tiles[:-1], tiles[1:]))
        return gap or pair

    columns = list(map(list, zip(*board)))
    can = {
        "A": any(map(lambda r: row_moves(r, True), board)),
        "W": any(map(lambda c: row_moves(c, True), columns)),
        "D": any(map(lambda r: row_moves(r, False), board)),
        "S": any(map(lambda c: row_moves(c, False), columns)),
    }
    order = ["A", "W", "D", "S"]
    legal = list(filter(lambda m: can[m], order))
    return legal[0] if legal else "A"
