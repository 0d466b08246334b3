// Golden with don't-care outputs: y is only specified when valid is high.
module TopModule (
  input  [3:0] x,
  input        valid,
  output reg [3:0] y
);
  always @(*) begin
    if (valid) y = ~x;
    else       y = 4'bxxxx;
  end
endmodule
