# Generates a 10,000-file workspace of source-like text (no secrets) for the airlock run benchmark.
import os, random, sys
root = sys.argv[1] if len(sys.argv) > 1 else "/tmp/airlock-bench/ws"
random.seed(7)
words = "fn let mut impl struct pub use self match Some None Ok Err return async await vec map iter into from config value name path".split()
os.makedirs(root, exist_ok=True)
open(os.path.join(root, ".gitignore"), "w").write("target/\n.cache/\n")
n = 0
for d in range(100):
    sub = os.path.join(root, "src" if d < 60 else ("target" if d < 80 else ".cache"), f"m{d:03}")
    os.makedirs(sub, exist_ok=True)
    for f in range(100 if n + 100 <= 9999 else 9999 - n):
        lines = [" ".join(random.choice(words) for _ in range(random.randint(4, 12))) for _ in range(random.randint(20, 120))]
        open(os.path.join(sub, f"f{f:03}.rs"), "w").write("\n".join(lines) + "\n")
        n += 1
print(n + 1, "files in", root)
