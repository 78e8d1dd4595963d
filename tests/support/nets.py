"""Networks written with the rule API's layers, shared by the reference, Monte Carlo and Triton
suites; `SINE` is the user-rule example module."""
from support.paths import EXAMPLES

SINE = EXAMPLES / "user_rules" / "sine.py"

NETS = {
    "leaky_dilated_lap_flatten": """input height=5 width=4 channels=2
conv w_std=1.3 b_std=0.2 dilation=2
leaky_relu slope=0.2
conv size=2 dilation=2 padding=valid
abrelu a=-0.5 b=1.5
lap size=3
flatten
dense b_std=0.1
""",
    "gelu_gap": """input height=4 width=3 channels=2
conv b_std=0.1
gelu
conv stride=2 dilation=2
relu
gap
dense
""",
    "lap_circular_even_gap": """input height=4 width=5 channels=1
conv size=3 dilation=2 padding=circular w_std=1.2
abrelu a=0.3 b=-1.1
lap size=2 padding=circular
relu
gap
dense
""",
    "lap_then_conv": """input height=6 width=5 channels=1
conv w_std=sqrt(2)
relu
lap size=5
conv dilation=3
relu
lap size=2
flatten
""",
    "flip_flatten": """input height=4 width=5 channels=2
flip
conv w_std=1.4
relu
lap size=3
flatten
dense
""",
    "flip_gap_pool_valid": """input height=6 width=6 channels=1
flip
conv dilation=2 size=3
leaky_relu slope=0.1
avgpool size=2
conv size=3 padding=valid
relu
gap
dense trainable=false
""",
    "user_sine": f"""use "{SINE}"
input height=4 width=4 channels=2
conv w_std=0.8
sine freq=0.9
conv size=3 dilation=2 w_std=0.7
sine freq=1.1
flatten
dense
""",
}


# residual blocks: nested, repeated, scaled, after the readout, frozen layers, every readout
RESIDUAL_NETS = {
    "wrn_block_gap": """input height=5 width=6 channels=2
conv w_std=sqrt(2) b_std=0.1
residual {
  relu
  conv w_std=sqrt(2)
  relu
  conv w_std=1.2 b_std=0.2
}
relu
gap
dense
""",
    "repeat_scaled_nested_flatten": """input height=6 width=5 channels=1
conv w_std=1.4 trainable=false
repeat 2 {
  residual scale=0.6 {
    erf
    conv size=1
    residual scale=1.3 {
      relu
      conv dilation=2 b_std=0.3
    }
    identity
    conv size=3 trainable=false
  }
}
relu
flatten
dense b_std=0.2
""",
    "pool_lap_around_blocks_and_a_dense_block": """input height=6 width=6 channels=2
conv w_std=sqrt(2)
relu
avgpool size=2
residual {
  gelu
  conv size=3 w_std=1.1
  conv size=1 padding=valid
}
lap size=3
relu
gap
residual scale=0.5 {
  relu
  dense w_std=1.5 b_std=0.1
}
dense trainable=false
""",
}
