// 8-bit adder with carry out (combinational).
module TopModule (
  input  [7:0] a,
  input  [7:0] b,
  output [8:0] s
);
  assign s = a + b;
endmodule
